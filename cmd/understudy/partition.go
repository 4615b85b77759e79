package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/understudy-ha/understudy/internal/cluster"
)

// partitionRow is one node's consul-watcher view in cluster status: asked
// of the node itself (its API answers in a partition, where its member
// record cannot be written), else as its member record last had it.
type partitionRow struct {
	Node string `json:"node"`
	// Source is "node" (its GET /v1/status/partition, now), "record" (its
	// member record, written before) or "" (no view: Error says why).
	Source string             `json:"source,omitempty"`
	View   *cluster.Partition `json:"view,omitempty"`
	Error  string             `json:"error,omitempty"`
}

// partitionRows are the nodes' views, by node name.
func partitionRows(v clusterView) []partitionRow {
	var rows []partitionRow
	for _, m := range v.status.Members {
		r := partitionRow{Node: m.Name}
		res, asked := v.partitions[m.Name]
		switch {
		case asked && res.Err == nil:
			r.Source, r.View = "node", &res.View
		case m.Partition != nil:
			r.Source, r.View, r.Error = "record", m.Partition, "no API URL in its member record"
			if asked {
				r.Error = res.Err.Error()
			}
		case asked:
			r.Error = res.Err.Error()
		default:
			r.Error = "no API URL in its member record and no view in it"
		}
		rows = append(rows, r)
	}
	slices.SortFunc(rows, func(a, b partitionRow) int { return strings.Compare(a.Node, b.Node) })
	return rows
}

// renderPartitions writes who reaches whom: each node's state since when,
// the servers it reaches, and those it does not with since when.
func renderPartitions(w io.Writer, rows []partitionRow, now time.Time) error {
	mode, timeout := "", time.Duration(0)
	for _, r := range rows {
		if r.View != nil {
			mode, timeout = r.View.Mode, time.Duration(r.View.MinorityTimeoutMS)*time.Millisecond
			break
		}
	}
	if mode == "" {
		_, err := fmt.Fprintf(w, "partitions: unknown: no node has a consul-watcher view (is understudy-consul-watcher running?)\n")
		return err
	}
	fmt.Fprintf(w, "partitions (partition_mode %s, minority_timeout %s):\n", mode, timeout)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		if r.View == nil {
			fmt.Fprintf(tw, "  %s\tunknown\t%s\n", r.Node, oneLine(r.Error))
			continue
		}
		v := r.View
		state := v.State
		if state == cluster.PartitionMinority {
			state = "MINORITY"
		}
		line := fmt.Sprintf("  %s\t%s since %s (%s)\treaches %d/%d servers: %s", r.Node, state, fmtTime(v.Since), fmtAgo(v.Since, now),
			v.ReachedServers, v.Servers, strings.Join(reached(v), ", "))
		for _, p := range v.Peers {
			if p.Reach != "" && p.Reach != cluster.Reached {
				line += fmt.Sprintf("; %s %s since %s", p.Name, p.Reach, fmtAgo(p.Since, now))
			}
		}
		switch {
		case r.Source == "record":
			line += fmt.Sprintf("\t(from its member record, %s; the node did not answer: %s)", fmtAgo(v.At, now), oneLine(r.Error))
		case v.Stale:
			line += fmt.Sprintf("\t(stale: last round %s; is its consul-watcher running?)", fmtAgo(v.At, now))
		}
		fmt.Fprintln(tw, line)
		if m := v.Minority; m != nil {
			fmt.Fprintf(tw, "  \tMINORITY SIDE %s: a consul quorum of its own since %s (%s), consul cluster %s; its writes may be thrown away when the partition heals\n",
				strings.Join(m.Side, ","), fmtTime(m.At), fmtAgo(m.At, now), m.Cluster)
		}
		if h := v.Heal; h != nil {
			fmt.Fprintf(tw, "  \theal decided by %s %s: %s\n", h.Decider, fmtAgo(h.At, now), oneLine(h.Reason))
		}
	}
	return tw.Flush()
}

// reached are the nodes whose Consul servers v's node reaches.
func reached(v *cluster.Partition) []string {
	var out []string
	for _, p := range v.Peers {
		if p.Reach == cluster.Reached || p.Reach == cluster.Slow {
			out = append(out, p.Name)
		}
	}
	return out
}
