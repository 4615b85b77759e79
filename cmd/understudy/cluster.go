package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// offlineAfter is how old a member record's heartbeat may be before the
// node counts as offline: three default heartbeat intervals (15 s).
const offlineAfter = 3 * 15 * time.Second

// apiOpts are the flags every command that talks to the API shares.
type apiOpts struct {
	profile string
	output  string
}

func (o *apiOpts) client() (*nodeapi.Client, error) {
	p, err := nodeapi.SelectProfile(o.profile)
	if err != nil {
		return nil, err
	}
	return nodeapi.New(p), nil
}

// json reports whether -o asks for JSON; anything but table or json is an
// error.
func (o *apiOpts) json() (bool, error) {
	switch o.output {
	case "", "table":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fmt.Errorf("--output %q: write table or json", o.output)
}

// setup checks -o and builds the client of the selected profile.
func (o *apiOpts) setup() (asJSON bool, c *nodeapi.Client, err error) {
	if asJSON, err = o.json(); err != nil {
		return false, nil, err
	}
	c, err = o.client()
	return asJSON, c, err
}

func newClusterCmd() *cobra.Command {
	o := &apiOpts{}
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Look at and steer a running cluster through the nodes' API",
		Long: `cluster talks to the handler-runner API of a cluster's nodes: the profile
named by --profile, else $UNDERSTUDY_PROFILE, else the profile "dev" when there
is one, else the local node (http://127.0.0.1:8008). Add profiles with
"understudy profile add".`,
		Args: noArgs,
	}
	cmd.PersistentFlags().StringVar(&o.profile, "profile", "", "the cluster profile to use (see understudy profile list)")
	cmd.PersistentFlags().StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	nodes := &cobra.Command{Use: "nodes", Short: "List the cluster's nodes or show one", Args: noArgs}
	nodes.AddCommand(newNodesListCmd(o), newNodesGetCmd(o), newNodesRemoveCmd(o), newNodesUpdateCmd(o))
	cmd.AddCommand(newClusterStartCmd(), newClusterJoinCmd(), newClusterTokenCmd(), newClusterStatusCmd(o), nodes, newSetActiveCmd(o), newHistoryCmd(o), newPauseCmd(o), newResumeCmd(o), newClusterConfigCmd(o), newReloadCmd(o), newRestartCmd(o), newReinitCmd(o), newFailoverCmd(o))
	return cmd
}

// clusterView is what status and nodes list show: the cluster status of
// any node, and each member's own answer to /v1/status/node.
type clusterView struct {
	status nodeapi.ClusterStatus
	live   map[string]nodeapi.NodeResult // by member name; absent: no API URL
	// partitions are the members' consul-watcher views, asked of each.
	partitions map[string]nodeapi.PartitionResult
}

func fetchCluster(ctx context.Context, c *nodeapi.Client) (clusterView, error) {
	cs, err := c.ClusterStatus(ctx)
	if err != nil {
		return clusterView{}, err
	}
	var names, urls []string
	for _, m := range cs.Members {
		if m.APIURL != "" {
			names, urls = append(names, m.Name), append(urls, m.APIURL)
		}
	}
	v := clusterView{status: cs, live: map[string]nodeapi.NodeResult{}, partitions: map[string]nodeapi.PartitionResult{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i, r := range c.Partitions(ctx, urls) {
			v.partitions[names[i]] = r
		}
	})
	for i, r := range c.NodeStatuses(ctx, urls) {
		v.live[names[i]] = r
	}
	wg.Wait()
	return v, nil
}

// nodeRow is one line of nodes list; its JSON is the -o json output.
type nodeRow struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	APIURL  string `json:"api_url,omitempty"`
	// State is leader, replica or offline.
	State  string `json:"state"`
	Consul string `json:"consul"`
	DBRole string `json:"db_role"`
	// LagBytes is null when the lag cannot be told.
	LagBytes      *int64            `json:"lag_bytes"`
	Lag           string            `json:"lag"`
	Checks        string            `json:"checks"`
	FailingChecks map[string]string `json:"failing_checks,omitempty"`
	// Files is each mirrored folder on the node; FilesSummary says it in
	// a few words ("-" without files blocks).
	Files        map[string]cluster.FolderState `json:"files,omitempty"`
	FilesSummary string                         `json:"files_summary"`
	// Upstream is the member a standby streams from (Patroni's topology),
	// its host:port when no member matches.
	Upstream string `json:"upstream,omitempty"`
	// RoleChanged is when the node's database role last changed (LAST
	// CHANGE, as NetQ's "Last Changed"); absent while unknown.
	RoleChanged  *time.Time `json:"role_changed,omitempty"`
	LastChange   string     `json:"last_change"`
	Heartbeat    time.Time  `json:"heartbeat"`
	HeartbeatAge string     `json:"heartbeat_age"`
	// Unreachable is why the node did not answer /v1/status/node.
	Unreachable string `json:"unreachable,omitempty"`
	// Maintenance is set while the node is in maintenance; its checks
	// that do not pass are then in QuietedChecks, not FailingChecks: the
	// maintenance's, not the cluster's problems.
	Maintenance   *cluster.Maintenance `json:"maintenance,omitempty"`
	QuietedChecks map[string]string    `json:"quieted_checks,omitempty"`
	// Minority is the side the node runs on while it runs on a Consul
	// quorum of its own (partition_mode active-minority), as it says
	// itself; MinorityActive is set when it is that side's active.
	Minority       *cluster.Minority `json:"minority,omitempty"`
	MinorityActive bool              `json:"minority_active,omitempty"`
}

func nodeRows(v clusterView, now time.Time) []nodeRow {
	rows := make([]nodeRow, 0, len(v.status.Members))
	for _, m := range v.status.Members {
		r := nodeRow{Name: m.Name, Address: m.Address, APIURL: m.APIURL,
			Consul: orDash(m.Checks["consul"]), DBRole: orDash(string(m.Role)), Lag: fmtBytes(m.LagBytes),
			Upstream: cluster.Upstream(m, v.status.Members), LastChange: "-",
			Heartbeat: m.Heartbeat, HeartbeatAge: fmtAgo(m.Heartbeat, now)}
		if !m.RoleChanged.IsZero() {
			r.RoleChanged, r.LastChange = &m.RoleChanged, fmtAgo(m.RoleChanged, now)
		}
		if m.LagBytes >= 0 {
			r.LagBytes = &m.LagBytes
		}
		r.Checks, r.FailingChecks = checksSummary(m.Checks)
		r.Files, r.FilesSummary = m.Files, filesSummary(m.Files)
		if live, ok := v.live[m.Name]; ok && live.Err != nil {
			r.Unreachable = live.Err.Error()
		} else if ok && live.Status.Minority != nil {
			r.Minority, r.MinorityActive = live.Status.Minority, live.Status.Role == nodeapi.RoleActive && live.Status.Serving
		}
		r.State = memberState(m, v.status.Leader, r.Unreachable != "", now)
		if mt, ok := v.status.Maintenance[m.Name]; ok {
			r.quiet(mt)
		}
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(a, b nodeRow) int { return strings.Compare(a.Name, b.Name) })
	return rows
}

// quiet marks the row in maintenance: its failing checks are kept, as
// quieted.
func (r *nodeRow) quiet(mt cluster.Maintenance) {
	r.Maintenance = &mt
	r.QuietedChecks, r.FailingChecks = r.FailingChecks, nil
	r.Checks = "maintenance: " + r.Checks
}

// stateWords is the STATE cell: the state, and maintenance when it is.
func (r nodeRow) stateWords() string {
	switch {
	case r.Maintenance != nil:
		return r.State + " (maintenance)"
	case r.MinorityActive:
		// Whatever the asked node's side says of it: it takes writes.
		return "MINORITY ACTIVE"
	case r.Minority != nil:
		return r.State + " (minority side)"
	}
	return r.State
}

// memberState is offline when the member's heartbeat is older than
// offlineAfter or its API did not answer, else leader or replica.
func memberState(m cluster.Member, leader string, unreachable bool, now time.Time) string {
	switch {
	case unreachable || m.Heartbeat.IsZero() || now.Sub(m.Heartbeat) > offlineAfter:
		return "offline"
	case m.Name == leader:
		return "leader"
	}
	return "replica"
}

// checksSummary is "6/6 passing", or the checks that are not passing with
// their state.
func checksSummary(checks map[string]string) (string, map[string]string) {
	if len(checks) == 0 {
		return "-", nil
	}
	failing := map[string]string{}
	for name, st := range checks {
		if st != "passing" {
			failing[name] = st
		}
	}
	if len(failing) == 0 {
		return fmt.Sprintf("%d/%d passing", len(checks), len(checks)), nil
	}
	parts := make([]string, 0, len(failing))
	for _, name := range slices.Sorted(maps.Keys(failing)) {
		parts = append(parts, name+" "+failing[name])
	}
	return strings.Join(parts, ", "), failing
}

// filesSummary is the FILES column: "in sync", or per folder what is
// wrong ("resources 1.2 MiB behind", "resources 3 changed here").
func filesSummary(fs map[string]cluster.FolderState) string {
	if len(fs) == 0 {
		return "-"
	}
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(fs)) {
		f := fs[name]
		switch {
		case f.State == "unknown":
			parts = append(parts, name+" unknown")
		case f.LocalChanges > 0:
			parts = append(parts, fmt.Sprintf("%s %d changed here", name, f.LocalChanges))
		case f.OutOfSyncBytes > 0:
			parts = append(parts, name+" "+fmtBytes(f.OutOfSyncBytes)+" behind")
		}
	}
	if len(parts) == 0 {
		return "in sync"
	}
	return strings.Join(parts, ", ")
}

func renderNodes(w io.Writer, rows []nodeRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tSTATE\tCONSUL\tDB ROLE\tUPSTREAM\tLAG\tCHECKS\tFILES\tLAST CHANGE\tHEARTBEAT")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, orDash(r.Address), r.stateWords(), r.Consul, r.DBRole, orDash(r.Upstream), r.Lag, r.Checks, r.FilesSummary, r.LastChange, r.HeartbeatAge)
	}
	return tw.Flush()
}

// statusReport is cluster status: its JSON is the -o json output.
type statusReport struct {
	Cluster     string              `json:"cluster"`
	Leader      string              `json:"leader"`
	LeaderSince *time.Time          `json:"leader_since,omitempty"`
	NextMaster  *cluster.NextMaster `json:"next_master,omitempty"`
	Nodes       []nodeRow           `json:"nodes"`
	// LastFailover is the newest failover or switchover event.
	LastFailover *cluster.Event `json:"last_failover,omitempty"`
	// EventsError is why the history could not be read.
	EventsError string `json:"events_error,omitempty"`
	// Consul is how the Consul servers stand (autopilot, through the node
	// asked), absent when it did not say.
	Consul *nodeapi.ServersHealth `json:"consul,omitempty"`
	// KeptAside is what rewinds kept of former primaries' writes, on each
	// node, until an operator removes it.
	KeptAside []keptAside `json:"kept_aside,omitempty"`
	// Paused is set while the cluster is paused.
	Paused *cluster.Pause `json:"paused,omitempty"`
	// Partitions are the nodes' consul-watcher views: who reaches whom.
	Partitions []partitionRow `json:"partitions"`
	// Stale: Consul had no leader; the leader and members are one node's
	// server's last knowledge.
	Stale bool `json:"stale,omitempty"`
	// LeaseCarried is how the active keeps its lease while Consul commits
	// none of its renewals (its own word).
	LeaseCarried *nodeapi.LeaseCarry `json:"lease_carried,omitempty"`
}

type keptAside struct {
	Node string `json:"node"`
	cluster.Diverged
}

// toleranceWords says what a cluster of nodes can lose: Consul needs a
// majority of its voting servers, one per node; without one no write
// reaches the leader key, so the active steps down at the end of its lease
// and none is elected until enough are back. Autopilot prunes a dead
// server within seconds, so the voters may be fewer than the nodes.
func toleranceWords(h *nodeapi.ServersHealth, nodes int) string {
	if h == nil {
		return "unknown: Consul's autopilot did not answer"
	}
	state := fmt.Sprintf("%d healthy voting Consul servers, %d needed, %d nodes", h.HealthyVoters, h.Voters/2+1, nodes)
	switch {
	case h.FailureTolerance == 1:
		return "1 node (" + state + ")"
	case h.FailureTolerance > 1:
		return fmt.Sprintf("%d nodes (%s)", h.FailureTolerance, state)
	case nodes <= 2:
		return "none: " + state + "; add a third node to survive the loss of one"
	}
	return "none: " + state + "; one more lost and no node can be active"
}

func newStatusReport(v clusterView, events []cluster.Event, now time.Time) statusReport {
	s := statusReport{Cluster: v.status.Cluster, Leader: v.status.Leader, Nodes: nodeRows(v, now)}
	s.Consul = v.status.Consul
	s.Paused = v.status.Paused
	s.Partitions = partitionRows(v)
	s.Stale = v.status.Stale
	for _, m := range v.status.Members {
		for _, d := range m.Diverged {
			s.KeptAside = append(s.KeptAside, keptAside{Node: m.Name, Diverged: d})
		}
	}
	if nm := v.status.NextMaster; nm != nil && nm.Node != s.Leader {
		s.NextMaster = nm
	}
	if live, ok := v.live[s.Leader]; ok && live.Err == nil && live.Status.Role == nodeapi.RoleActive && !live.Status.Since.IsZero() {
		s.LeaderSince = &live.Status.Since
		s.LeaseCarried = live.Status.LeaseCarried
	}
	for _, e := range events { // newest first
		if e.Kind == cluster.EventFailover || e.Kind == cluster.EventSwitchover {
			s.LastFailover = &e
			if s.LeaderSince == nil && s.Leader != "" && e.To == s.Leader {
				s.LeaderSince = &e.Time
			}
			break
		}
	}
	return s
}

func renderStatus(w io.Writer, s statusReport, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "cluster:\t%s\n", orDash(s.Cluster))
	if p := s.Paused; p != nil {
		reason := ""
		if p.Reason != "" {
			reason = ": " + oneLine(p.Reason)
		}
		fmt.Fprintf(tw, "PAUSED:\tby %s since %s (%s)%s; no election and no PostgreSQL restart until understudy cluster resume\n", p.By, fmtTime(p.At), fmtAgo(p.At, now), reason)
	}
	switch {
	case s.Leader == "":
		fmt.Fprintf(tw, "leader:\tnone: no node holds the lock (an election may be in progress)\n")
	case s.LeaderSince != nil:
		fmt.Fprintf(tw, "leader:\t%s, active since %s (%s)\n", s.Leader, fmtTime(*s.LeaderSince), fmtAgo(*s.LeaderSince, now))
	default:
		fmt.Fprintf(tw, "leader:\t%s\n", s.Leader)
	}
	if s.Stale {
		fmt.Fprintf(tw, "CONSUL:\tno leader: the leader and members here are one node's Consul server's last knowledge and may be old (a Consul outage, or that node cut off; see partitions below)\n")
	}
	if c := s.LeaseCarried; c != nil {
		who := strings.Join(c.GrantedBy, ", ")
		if c.Rule == nodeapi.CarryFailsafe {
			fmt.Fprintf(tw, "FAILSAFE:\t%s keeps taking writes without a Consul leader since %s (%s): every other member confirms it (%s); consul.outage = \"failsafe\"\n",
				s.Leader, fmtTime(c.Since), fmtAgo(c.Since, now), who)
		} else {
			fmt.Fprintf(tw, "lease:\tConsul commits no renewal since %s (%s), a leader election: the lease is carried by %s\n", fmtTime(c.Since), fmtAgo(c.Since, now), who)
		}
	}
	if nm := s.NextMaster; nm != nil {
		fmt.Fprintf(tw, "next master:\t%s, chosen by %s %s: %s\n", nm.Node, nm.By, fmtAgo(nm.At, now), oneLine(nm.Reason))
	}
	switch e := s.LastFailover; {
	case e != nil:
		fmt.Fprintf(tw, "last %s:\t%s %s→%s (%s): %s\n", e.Kind, fmtTime(e.Time), orDash(e.From), orDash(e.To), fmtAgo(e.Time, now), oneLine(e.Reason))
	case s.EventsError != "":
		fmt.Fprintf(tw, "last failover:\tunknown: %s\n", s.EventsError)
	default:
		fmt.Fprintf(tw, "last failover:\tnone recorded\n")
	}
	fmt.Fprintf(tw, "can lose:\t%s\n", toleranceWords(s.Consul, len(s.Nodes)))
	for _, r := range s.Nodes {
		if mt := r.Maintenance; mt != nil {
			reason := ""
			if mt.Reason != "" {
				reason = ": " + oneLine(mt.Reason)
			}
			fmt.Fprintf(tw, "maintenance:\t%s, by %s since %s (%s)%s; never chosen as active, its alarms quieted, until understudy node maintenance off %s\n",
				r.Name, mt.By, fmtTime(mt.At), fmtAgo(mt.At, now), reason, r.Name)
		}
	}
	for _, k := range s.KeptAside {
		fmt.Fprintf(tw, "kept aside:\ton %s, %d transactions a former primary committed after the fork (timeline %d, %s to %s), in %s since %s; read them with %s, remove the directory when done\n",
			k.Node, k.Commits, k.Timeline, k.From, k.To, k.Dir, fmtTime(k.At), k.Inspect())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "members (%d):\n", len(s.Nodes))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range s.Nodes {
		line := fmt.Sprintf("  %s\t%s\t%s\tlag %s\t%s\theartbeat %s", r.Name, r.stateWords(), r.DBRole, r.Lag, r.Checks, r.HeartbeatAge)
		if r.Unreachable != "" {
			line += "\t(" + r.Unreachable + ")"
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return renderPartitions(w, s.Partitions, now)
}

func newClusterStatusCmd(o *apiOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the cluster in a few lines: leader, members' health, last failover",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			v, err := fetchCluster(cmd.Context(), c)
			if err != nil {
				return err
			}
			// The history only adds the last failover: a node that cannot
			// read it does not hide the rest.
			events, err := c.Events(cmd.Context(), 200)
			s := newStatusReport(v, events, time.Now())
			if err != nil {
				s.EventsError = err.Error()
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), s)
			}
			return renderStatus(cmd.OutOrStdout(), s, time.Now())
		},
	}
}

func newNodesListCmd(o *apiOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the nodes: state, Consul health, database role, upstream, lag, checks",
		Long: `list shows each member record with the node's state: leader (holds the lock),
replica, or offline (its heartbeat is older than 45s or its API does not
answer from here). UPSTREAM is the member a standby streams from; LAST
CHANGE is when the node's database role last changed (primary or standby);
HEARTBEAT is the age of its member record, rewritten every check interval.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			v, err := fetchCluster(cmd.Context(), c)
			if err != nil {
				return err
			}
			rows := nodeRows(v, time.Now())
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), rows)
			}
			return renderNodes(cmd.OutOrStdout(), rows)
		},
	}
}

// nodeReport is nodes get: its JSON is the -o json output.
type nodeReport struct {
	Member cluster.Member      `json:"member"`
	State  string              `json:"state"`
	Status *nodeapi.NodeStatus `json:"status,omitempty"`
	// StatusError is why /v1/status/node did not answer.
	StatusError string `json:"status_error,omitempty"`
}

func renderNode(w io.Writer, r nodeReport, now time.Time) error {
	m := r.Member
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	kv := func(k, format string, a ...any) { fmt.Fprintf(tw, k+":\t"+format+"\n", a...) }
	kv("name", "%s", m.Name)
	kv("state", "%s", r.State)
	kv("address", "%s (api %s)", orDash(m.Address), orDash(m.APIURL))
	kv("db role", "%s, timeline %d, port %d", m.Role, m.Timeline, m.PostgresPort)
	if !m.RoleChanged.IsZero() {
		kv("role changed", "%s (%s)", fmtTime(m.RoleChanged), fmtAgo(m.RoleChanged, now))
	}
	if m.UpstreamHost != "" {
		kv("upstream", "%s:%d", m.UpstreamHost, m.UpstreamPort)
	}
	kv("lsn", "write %s, receive %s, replay %s", m.WriteLSN, m.ReceiveLSN, m.ReplayLSN)
	kv("lag", "%s", fmtBytes(m.LagBytes))
	kv("priority", "%d, nofailover %s", m.Priority, yesNo(m.NoFailover))
	if len(m.Tags) > 0 {
		kv("tags", "%s", strings.Join(m.Tags, ", "))
	}
	kv("versions", "understudy %s, postgres %s, consul %s", orDash(m.Versions.Understudy), orDash(m.Versions.Postgres), orDash(m.Versions.Consul))
	checks := make([]string, 0, len(m.Checks))
	for _, name := range slices.Sorted(maps.Keys(m.Checks)) {
		checks = append(checks, name+" "+m.Checks[name])
	}
	kv("checks", "%s", orDash(strings.Join(checks, ", ")))
	kv("heartbeat", "%s (%s)", fmtTime(m.Heartbeat), fmtAgo(m.Heartbeat, now))
	if m.SyncthingDeviceID != "" {
		kv("syncthing", "%s at %s", m.SyncthingDeviceID, orDash(m.SyncthingAddress))
	}
	for _, name := range slices.Sorted(maps.Keys(m.Files)) {
		f := m.Files[name]
		kv("files "+name, "%s %s, %s out of sync, %d changed here", f.Type, f.State, fmtBytes(f.OutOfSyncBytes), f.LocalChanges)
	}
	if r.StatusError != "" {
		kv("live", "no answer: %s", r.StatusError)
		return tw.Flush()
	}
	if st := r.Status; st != nil {
		pg := st.Postgres
		kv("live role", "%s since %s (%s): %s", st.Role, fmtTime(st.Since), fmtAgo(st.Since, now), orDash(oneLine(st.Reason)))
		kv("live session", "%s, serving %s, leader %s", yesNo(st.HasSession), yesNo(st.Serving), orDash(st.Leader))
		if mt := st.Maintenance; mt != nil {
			kv("maintenance", "by %s since %s (%s): never chosen as active; its failing checks are marked [maintenance]", mt.By, fmtTime(mt.At), fmtAgo(mt.At, now))
		}
		kv("live postgres", "running %s, in recovery %s, streaming %s, timeline %d, position %s", yesNo(pg.Running), yesNo(pg.InRecovery), yesNo(pg.Streaming), pg.Timeline, pg.Position())
		if pg.Error != "" {
			kv("live error", "%s", oneLine(pg.Error))
		}
	}
	return tw.Flush()
}

func newNodesGetCmd(o *apiOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "get NAME",
		Short:   "Show everything known of one node: its member record and its live state",
		Example: "  understudy cluster nodes get mgr-2 --profile prod",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			cs, err := c.ClusterStatus(cmd.Context())
			if err != nil {
				return err
			}
			i := slices.IndexFunc(cs.Members, func(m cluster.Member) bool { return m.Name == args[0] })
			if i < 0 {
				names := make([]string, len(cs.Members))
				for j, m := range cs.Members {
					names[j] = m.Name
				}
				return fmt.Errorf("no member named %q in cluster %s; the members are: %s", args[0], cs.Cluster, strings.Join(names, ", "))
			}
			r := nodeReport{Member: cs.Members[i], StatusError: "the member record publishes no API URL"}
			if url := r.Member.APIURL; url != "" {
				st, err := c.NodeStatus(cmd.Context(), url)
				r.Status, r.StatusError = &st, ""
				if err != nil {
					r.Status, r.StatusError = nil, err.Error()
				}
			}
			r.State = memberState(r.Member, cs.Leader, r.Status == nil && r.Member.APIURL != "", time.Now())
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), r)
			}
			return renderNode(cmd.OutOrStdout(), r, time.Now())
		},
	}
}

func newSetActiveCmd(o *apiOpts) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "set-active NAME",
		Short: "Move the active role to NAME: a planned switchover that loses nothing",
		Long: `set-active asks the active node for a switchover: it stops PostgreSQL cleanly,
NAME replays every WAL record and then takes the lock. It returns when NAME is
the active node, or fails after --timeout (see understudy cluster history).`,
		Example: "  understudy cluster set-active mgr-2 --timeout 120s --profile prod",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 || timeout > time.Hour {
				return fmt.Errorf("--timeout %v: write a duration up to 1h, like 60s", timeout)
			}
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "moving the active role to %s (waiting up to %v)\n", args[0], timeout)
			res, err := c.Switchover(cmd.Context(), args[0], timeout)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), map[string]any{"active": res.Active, "took": res.Took.String(), "took_seconds": res.Took.Seconds()})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is the active node; the switchover took %v\n", res.Active, res.Took)
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long to wait for NAME to become active (up to 1h)")
	return cmd
}

func renderHistory(w io.Writer, events []cluster.Event) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tNODE\tKIND\tCHANGE\tREASON")
	for _, e := range events {
		change := "-"
		if e.From != "" || e.To != "" {
			change = orDash(e.From) + "→" + orDash(e.To)
		}
		reason := oneLine(e.Reason)
		if e.LSN != 0 {
			reason = strings.TrimSpace(reason + " [lsn " + e.LSN.String() + "]")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", fmtTime(e.Time), orDash(e.Node), e.Kind, change, orDash(reason))
	}
	return tw.Flush()
}

func newHistoryCmd(o *apiOpts) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Show the cluster's events, newest first: failovers, switchovers, role changes",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 10000 {
				return fmt.Errorf("--limit %d: write a number from 1 to 10000", limit)
			}
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			events, err := c.Events(cmd.Context(), limit)
			if err != nil {
				return err
			}
			// Newest first, whatever order the node answered in.
			slices.SortStableFunc(events, func(a, b cluster.Event) int { return b.Time.Compare(a.Time) })
			if asJSON {
				if events == nil {
					events = []cluster.Event{}
				}
				return writeJSONOut(cmd.OutOrStdout(), events)
			}
			return renderHistory(cmd.OutOrStdout(), events)
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 50, "how many events to show (1 to 10000)")
	return cmd
}

func writeJSONOut(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fmtBytes is a byte count for people: "0 B", "512 B", "1.2 MiB"; "-" for
// the -1 that means unknown.
func fmtBytes(n int64) string {
	if n < 0 {
		return "-"
	}
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	v, unit := float64(n)/1024, 0
	for v >= 1023.95 && unit < 5 {
		v, unit = v/1024, unit+1
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[unit])
}

// fmtAgo is how long before now t was: "3s ago", "4m ago", "2h5m ago",
// "3d4h ago"; "never" for the zero time.
func fmtAgo(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%dm ago", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%dh ago", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// fmtTime is a time in UTC, as the cluster's logs and events write it.
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// oneLine keeps a table row on one line whatever a reason holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func newPauseCmd(o *apiOpts) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "pause [--reason TEXT]",
		Short: "Stop automatic failover and PostgreSQL restarts until resume",
		Long: `pause writes the cluster's paused key: until "understudy cluster resume", no
standby stands for election and no PostgreSQL that stops is started again, so
that PostgreSQL or the machines can be worked on without the cluster
reacting. Fencing is not paused: an active that loses its lease still stops
taking writes. /status keeps answering by who holds the lock; cluster status,
nodes list and /metrics (understudy_cluster_paused) show the pause.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			ans, err := c.Pause(cmd.Context(), reason)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), ans)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster paused by %s: no election and no PostgreSQL restart until understudy cluster resume\n", ans.Paused.By)
			if ans.Active != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s stays the active node\n", ans.Active)
			}
			if ans.Warning != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s\n", ans.Warning)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for cluster status and the history")
	return cmd
}

func newResumeCmd(o *apiOpts) *cobra.Command {
	return &cobra.Command{
		Use:   "resume",
		Short: "End a pause: failover and PostgreSQL restarts are automatic again",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			asJSON, c, err := o.setup()
			if err != nil {
				return err
			}
			if err := c.Resume(cmd.Context()); err != nil {
				return err
			}
			if asJSON {
				return writeJSONOut(cmd.OutOrStdout(), map[string]any{"paused": nil})
			}
			fmt.Fprintln(cmd.OutOrStdout(), "cluster resumed: failover and PostgreSQL restarts are automatic again")
			return nil
		},
	}
}
