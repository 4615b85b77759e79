package handlerrunner

import (
	"context"
	"encoding/json"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
	"github.com/understudy-ha/understudy/internal/nodeapi"
)

// metrics are the handler-runner's Prometheus series, on a registry of its
// own so tests and several runners in one process do not collide.
type metrics struct {
	reg         *prometheus.Registry
	role        *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	promotions  *prometheus.CounterVec
	hookFails   prometheus.Counter
	session     prometheus.Gauge
	paused      prometheus.Gauge
	// pendingRestart counts the parameters waiting for a restart.
	pendingRestart prometheus.Gauge
	maintenance    prometheus.Gauge
	leaseCarried   *prometheus.GaugeVec
}

var roles = []nodeapi.Role{nodeapi.RoleRejoining, nodeapi.RoleStandby, nodeapi.RoleCandidate, nodeapi.RoleActive, nodeapi.RoleDemoting}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_role", Help: "1 for the node's current role, 0 for the others.",
		}, []string{"role"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_role_transitions_total", Help: "Role transitions of this node.",
		}, []string{"from", "to"}),
		promotions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "understudy_promotions_total", Help: "Times this node became active, by kind (failover, switchover).",
		}, []string{"kind"}),
		hookFails: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "understudy_promote_hook_failures_total", Help: "Promote hooks that failed on this node.",
		}),
		session: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "understudy_session_valid", Help: "1 while the node holds a Consul session (its bound checks pass).",
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "understudy_cluster_paused", Help: "1 while the cluster is paused (understudy cluster pause): no election, no PostgreSQL restart.",
		}),
		pendingRestart: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "understudy_postgres_pending_restart", Help: "PostgreSQL parameters changed in the files that take effect at the next restart (understudy cluster restart --pending).",
		}),

		maintenance: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "understudy_node_maintenance",
			Help: "1 while this node is in maintenance (understudy node maintenance on): never chosen as active; silence its alerts with `unless on(instance) understudy_node_maintenance == 1`.",
		}),
		leaseCarried: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "understudy_lease_carried",
			Help: "1 on the active while Consul commits none of its lease renewals and the peers' grants carry it, by rule: majority (a Consul leader election) or failsafe (a Consul outage, every member confirms; consul.outage).",
		}, []string{"rule"}),
	}
	for _, rule := range []string{nodeapi.CarryMajority, nodeapi.CarryFailsafe} {
		m.leaseCarried.WithLabelValues(rule)
	}
	m.reg.MustRegister(m.role, m.transitions, m.promotions, m.hookFails, m.session, m.paused, m.pendingRestart, m.maintenance, m.leaseCarried,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range roles {
		m.role.WithLabelValues(string(r))
	}
	return m
}

func (m *metrics) transition(from, to nodeapi.Role) {
	for _, r := range roles {
		v := 0.0
		if r == to {
			v = 1
		}
		m.role.WithLabelValues(string(r)).Set(v)
	}
	if from != "" {
		m.transitions.WithLabelValues(string(from), string(to)).Inc()
	}
}

// carried sets understudy_lease_carried to c's rule, none when c is nil.
func (m *metrics) carried(c *nodeapi.LeaseCarry) {
	for _, rule := range []string{nodeapi.CarryMajority, nodeapi.CarryFailsafe} {
		m.leaseCarried.WithLabelValues(rule).Set(b2f(c != nil && c.Rule == rule))
	}
}

func (m *metrics) promoted(kind string) { m.promotions.WithLabelValues(kind).Inc() }
func (m *metrics) hookFailed()          { m.hookFails.Inc() }

// memberCollector exports what the node's check-runner last published in
// its member record, read from Consul at scrape time: the state of each
// health check and the replication lag. The handler-runner does not run
// checks itself, and one /metrics shows both daemons.
type memberCollector struct {
	r      *Runner
	checks *prometheus.Desc
	lag    *prometheus.Desc
}

func newMemberCollector(r *Runner) memberCollector {
	return memberCollector{r: r,
		checks: prometheus.NewDesc("understudy_check_status",
			"1 for each health check's current state as the check-runner last published it.", []string{"check", "status"}, nil),
		lag: prometheus.NewDesc("understudy_replication_lag_bytes",
			"How far this standby's replay trails the active's last published write position; 0 on the active, -1 unknown.", nil, nil),
	}
}

func (c memberCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.checks; ch <- c.lag }

func (c memberCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// A stale read, from the local server: a scrape during a Consul
	// outage (failsafe) answers at once, with the record as last
	// replicated here, rather than waiting for a leader.
	ks, err := c.r.cc.GetKeyStale(ctx, c.r.keys.Member(c.r.name))
	var m cluster.Member
	if err != nil || !ks.Found || json.Unmarshal(ks.Value, &m) != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(m.LagBytes))
	for check, status := range m.Checks {
		for _, s := range []string{consul.Passing, consul.Warning, consul.Critical} {
			ch <- prometheus.MustNewConstMetric(c.checks, prometheus.GaugeValue, b2f(s == status), check, s)
		}
	}
}
