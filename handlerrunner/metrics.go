package handlerrunner

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/understudy-ha/understudy/internal/cluster"
	"github.com/understudy-ha/understudy/internal/consul"
)

// metrics are the handler-runner's Prometheus series, on a registry of its
// own so tests and several runners in one process do not collide.
type metrics struct {
	reg         *prometheus.Registry
	role        *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	promotions  *prometheus.CounterVec
	hookFails   prometheus.Counter
	lag         prometheus.Gauge
	session     prometheus.Gauge
}

var roles = []Role{RoleRejoining, RoleStandby, RoleCandidate, RoleActive, RoleDemoting}

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
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "understudy_replication_lag_bytes", Help: "How far this standby's replay trails the active's last published write position; -1 unknown, 0 on the active.",
		}),
		session: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "understudy_session_valid", Help: "1 while the node holds a Consul session (its bound checks pass).",
		}),
	}
	m.reg.MustRegister(m.role, m.transitions, m.promotions, m.hookFails, m.lag, m.session,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range roles {
		m.role.WithLabelValues(string(r))
	}
	m.lag.Set(-1)
	return m
}

func (m *metrics) transition(from, to Role) {
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

func (m *metrics) promoted(kind string) { m.promotions.WithLabelValues(kind).Inc() }
func (m *metrics) hookFailed()          { m.hookFails.Inc() }

// checksCollector exports the node's health checks as its check-runner last
// published them in the member record, read from Consul at scrape time: the
// handler-runner does not run checks itself, and one /metrics shows both.
type checksCollector struct {
	r    *Runner
	desc *prometheus.Desc
}

func (c checksCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c checksCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var m cluster.Member
	if _, found, err := c.r.cc.GetJSON(ctx, c.r.keys.Member(c.r.name), &m); err != nil || !found {
		return
	}
	for check, status := range m.Checks {
		for _, s := range []string{consul.Passing, consul.Warning, consul.Critical} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, b2f(s == status), check, s)
		}
	}
}
