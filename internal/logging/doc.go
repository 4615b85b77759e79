// Package logging builds the slog.Logger every understudy daemon logs with:
// straight to the journal with structured fields when systemd connected
// stderr to it (so `journalctl -u understudy-check-runner NODE=mgr-1 CHECK=postgres-role`
// works), and as logfmt text on stderr everywhere else.
//
// It formats and delivers records; it must not decide what is logged.
package logging
