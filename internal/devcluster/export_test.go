package devcluster

// Alive is alive, for the package's external tests.
var Alive = alive
