package checkrunner

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/replication/postgres"
)

// The health checks, by the names operators see in Consul and in logs.
const (
	CheckListening = "postgres-listening"
	CheckQuery     = "postgres-query"
	CheckRole      = "postgres-role"
	CheckServices  = "services"
	CheckConsul    = "consul"
	CheckHeartbeat = "heartbeat"
	// CheckCertificates warns ExpiryWarning before the node certificate or
	// the cluster CA expires, and fails once one has.
	CheckCertificates = "certificates"
)

// Checks lists every check in the order they are registered and reported.
var Checks = []string{CheckListening, CheckQuery, CheckRole, CheckServices, CheckConsul, CheckCertificates, CheckFiles, CheckHeartbeat}

// ServiceID is the ID (and name) of the service the checks belong to.
const ServiceID = "understudy"

// CheckID is the Consul check ID of a check: unique on the agent, and
// recognisable among other services' checks.
func CheckID(name string) string { return ServiceID + ":" + name }

// Result is a check's state and the words an operator reads in Consul.
type Result struct {
	Status string // consul.Passing, consul.Warning or consul.Critical
	Output string
}

func pass(format string, a ...any) Result { return Result{consul.Passing, fmt.Sprintf(format, a...)} }
func warn(format string, a ...any) Result { return Result{consul.Warning, fmt.Sprintf(format, a...)} }
func fail(format string, a ...any) Result { return Result{consul.Critical, fmt.Sprintf(format, a...)} }

// observation is everything one round looked at; the checks are pure
// functions of it, so their verdicts are table-tested without processes.
type observation struct {
	self     string
	pgAddr   string
	dialErr  error
	pingErr  error
	state    postgres.State
	stateErr error
	// planned is set when PostgreSQL failed a probe of this round while
	// the handler-runner restarted it on purpose (planned.go).
	planned *PlannedRestart

	agent    consul.AgentInfo
	agentErr error
	// leader is nil when no node holds the leader key; leaderErr is set when
	// the key could not be read at all.
	leader       *cluster.Leader
	leaderErr    error
	leaderMember *cluster.Member // the leader's member record, when known
	// own is this node's record as a previous check-runner left it, read
	// until one read succeeds (ownRead), for the role-change time.
	own     cluster.Member
	ownRead bool

	// options are the node's runtime options; optionsErr is set when they
	// could not be read.
	options    cluster.NodeOptions
	optionsErr error
	// maintenance: the node is in maintenance (maintenance/<node>);
	// maintenanceErr is set when that could not be read.
	maintenance    bool
	maintenanceErr error

	// certs are the node's TLS certificates and how long each is valid;
	// none on a node not set up by cluster start or join.
	certs []certState

	services []serviceState
	// servicesErr is set when the node's role could not be told, so which
	// services should run is unknown.
	servicesErr error

	// folders are the files blocks as Syncthing reports them; filesErr is
	// set when Syncthing could not be asked at all.
	folders  []folderObs
	filesErr error

	// handlerErr is why the node's handler-runner did not answer its API
	// (nil when it did, or when the guard is off).
	handlerErr error
}

type certState struct {
	name      string // "node certificate", "cluster CA"
	path      string
	expiresIn time.Duration
	err       error
}

type serviceState struct {
	name       string
	activeOnly bool
	running    bool
	detail     string
	err        error
}

// active reports whether this node holds the leader key.
func (o *observation) active() bool { return o.leader != nil && o.leader.Node == o.self }

// plannedDown is the verdict on a probe that failed while the handler-runner
// restarted PostgreSQL on purpose: a warning, which leaves the node's
// session alone (planned.go says why).
func plannedDown(o *observation, what string, err error) Result {
	by := ""
	if o.planned.By != "" {
		by = " (" + o.planned.By + ")"
	}
	return warn("postgres is being restarted by understudy%s since %s: %s: %v", by, o.planned.Began.UTC().Format(time.TimeOnly), what, err)
}

func checkListening(o *observation) Result {
	if o.dialErr != nil && o.planned != nil {
		return plannedDown(o, "not accepting connections at "+o.pgAddr, o.dialErr)
	}
	if o.dialErr != nil {
		return fail("postgres is not accepting connections at %s: %v; is it running? see its log, or `understudy` will restart it", o.pgAddr, o.dialErr)
	}
	return pass("postgres accepts TCP connections at %s", o.pgAddr)
}

func checkQuery(o *observation) Result {
	if o.pingErr != nil && o.planned != nil {
		return plannedDown(o, "select 1 failed", o.pingErr)
	}
	if o.pingErr != nil {
		return fail("select 1 failed on postgres at %s: %v", o.pgAddr, o.pingErr)
	}
	return pass("select 1 answered by postgres %s at %s", o.state.ServerVersion, o.pgAddr)
}

func checkRole(o *observation) Result {
	if o.pingErr != nil && o.planned != nil {
		return plannedDown(o, "cannot ask its role", o.pingErr)
	}
	if o.pingErr != nil {
		return fail("cannot ask postgres its role: %v", o.pingErr)
	}
	if o.stateErr != nil {
		return fail("cannot ask postgres its role: %v", o.stateErr)
	}
	if o.leaderErr != nil {
		return warn("cannot tell which node is active: %v", o.leaderErr)
	}
	if o.leader == nil {
		return warn("no node holds the leader key (election in progress or no active node); postgres is %s", roleWord(o.state))
	}
	st := o.state
	if o.active() {
		if st.InRecovery {
			return fail("this node holds the leader key but postgres is in recovery (a standby); it should be the primary")
		}
		return pass("primary on timeline %d at %v, as the active node should be", st.Timeline, st.WriteLSN)
	}
	if !st.InRecovery {
		return fail("postgres is a primary (not in recovery) but %s is the active node; this node must be a standby of it", o.leader.Node)
	}
	r := st.Receiver
	if r == nil {
		return fail("standby is not receiving WAL (no WAL receiver); it should stream from the active node %s", o.leader.Node)
	}
	if r.Status != "streaming" {
		return fail("standby's WAL receiver is %q, not streaming from the active node %s", r.Status, o.leader.Node)
	}
	lm := o.leaderMember
	if lm == nil {
		return warn("standby streams from %s but the active node %s has published no member record to compare with", net.JoinHostPort(r.SenderHost, strconv.Itoa(r.SenderPort)), o.leader.Node)
	}
	from := net.JoinHostPort(r.SenderHost, strconv.Itoa(r.SenderPort))
	want := net.JoinHostPort(lm.Address, strconv.Itoa(lm.PostgresPort))
	if r.SenderHost != lm.Address || r.SenderPort != lm.PostgresPort {
		return fail("standby streams from %s, but the active node %s is at %s; it must follow the active node", from, o.leader.Node, want)
	}
	return pass("standby streaming from %s (%s) on timeline %d, replay %v, lag %s",
		o.leader.Node, from, st.Timeline, st.ReplayLSN, lagWords(cluster.Lag(lm.WriteLSN, st.ReplayLSN)))
}

func roleWord(st postgres.State) string {
	if st.InRecovery {
		return "a standby"
	}
	return "a primary"
}

func lagWords(lag int64) string {
	if lag < 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d bytes", lag)
}

func checkServices(o *observation) Result {
	if o.servicesErr != nil {
		return warn("cannot tell which services should run here: %v", o.servicesErr)
	}
	if len(o.services) == 0 {
		return pass("no services configured")
	}
	role := "standby"
	if o.active() {
		role = "active"
	}
	var down, errs, stray, up []string
	for _, s := range o.services {
		shouldRun := !s.activeOnly || o.active()
		switch {
		case s.err != nil:
			errs = append(errs, fmt.Sprintf("%s (%v)", s.name, s.err))
		case shouldRun && !s.running:
			down = append(down, fmt.Sprintf("%s (%s)", s.name, s.detail))
		case !shouldRun && s.running:
			stray = append(stray, s.name)
		case shouldRun:
			up = append(up, s.name)
		}
	}
	switch {
	case len(errs) > 0:
		return fail("cannot ask the state of: %s", strings.Join(errs, ", "))
	case len(down) > 0:
		return fail("not running on this %s node: %s", role, strings.Join(down, ", "))
	case len(stray) > 0:
		return warn("active-only services running on a standby: %s; they should run only on the active node", strings.Join(stray, ", "))
	}
	return pass("running as a %s node should: %s", role, strings.Join(up, ", "))
}

func checkConsul(o *observation) Result {
	if o.agentErr != nil {
		return fail("local consul agent: %v", o.agentErr)
	}
	if o.agent.Leader == "" {
		return fail("consul cluster has no leader (no quorum of servers): cluster state cannot change until it has one")
	}
	return pass("consul agent %s (%s) healthy; raft leader %s", o.agent.NodeName, o.agent.Version, o.agent.Leader)
}

func checkHeartbeat(now time.Time) Result {
	return pass("check-runner alive at %s", now.UTC().Format(time.RFC3339))
}

// evaluate turns one observation into the verdicts of the per-interval checks.
func evaluate(o *observation) map[string]Result {
	return map[string]Result{
		CheckListening:    checkListening(o),
		CheckQuery:        checkQuery(o),
		CheckRole:         checkRole(o),
		CheckServices:     checkServices(o),
		CheckConsul:       checkConsul(o),
		CheckCertificates: checkCertificates(o),
		CheckFiles:        checkFiles(o),
	}
}

func checkCertificates(o *observation) Result {
	if len(o.certs) == 0 {
		return pass("no TLS certificates: this node was not set up by cluster start or join")
	}
	var expired, soon, ok []string
	for _, c := range o.certs {
		days := int(c.expiresIn.Hours() / 24)
		switch {
		case c.err != nil:
			expired = append(expired, fmt.Sprintf("%s %s cannot be read: %v", c.name, c.path, c.err))
		case c.expiresIn <= 0:
			expired = append(expired, fmt.Sprintf("%s %s has expired", c.name, c.path))
		case c.expiresIn < certs.ExpiryWarning:
			soon = append(soon, fmt.Sprintf("%s %s expires in %d days", c.name, c.path, days))
		default:
			ok = append(ok, fmt.Sprintf("%s valid for %d days", c.name, days))
		}
	}
	switch {
	case len(expired) > 0:
		return fail("%s; renew it before the node can talk to its peers again", strings.Join(expired, "; "))
	case len(soon) > 0:
		return warn("%s; renew it before then", strings.Join(soon, "; "))
	}
	return pass("%s", strings.Join(ok, ", "))
}

// maintenancePrefix marks the output of a check that does not pass on a
// node in maintenance: Consul, nodes get and the journal keep it, and say
// whose problem it is.
const maintenancePrefix = "[maintenance] "

// quiet marks every result that does not pass as the maintenance's. The
// status stays: the node's session, and whether it could take over, still
// follow its checks.
func quiet(results map[string]Result) {
	for name, res := range results {
		if res.Status != consul.Passing {
			res.Output = maintenancePrefix + res.Output
			results[name] = res
		}
	}
}
