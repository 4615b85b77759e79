package handlerrunner_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/understudy-ha/understudy/internal/testenv"
)

// phases of one failover, each measured from the failure (or the request).
type phases struct {
	detection time.Duration // the leader key is free
	election  time.Duration // another node holds the leader key
	promotion time.Duration // it answers /status 200
	write     time.Duration // it acknowledged a write
}

// BenchmarkFailover runs UNDERSTUDY_BENCH_RUNS (default 3) failovers of each
// kind on a three-node loopback cluster with the default configuration and
// prints min/median/max of every phase. `make bench-failover` runs it.
// node-cut is node-kill on hosts with network stacks of their own, the
// node's network cut as well: a dead host answers nothing, where a killed
// process on a live host answers "connection refused".
func BenchmarkFailover(b *testing.B) {
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("UNDERSTUDY_BENCH_RUNS")); err == nil && n > 0 {
		runs = n
	}
	report := map[string][]phases{}
	kinds := []string{"postgres-kill", "node-kill", "node-cut", "switchover"}
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) { report[kind] = benchKind(b, kind, runs) })
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nfailover phases over %d runs each (min / median / max), measured from the failure:\n", runs)
	fmt.Fprintf(&out, "%-14s %-24s %-24s %-24s %-24s\n", "kind", "detection", "election", "promotion", "first write")
	for _, kind := range kinds {
		ps := report[kind]
		col := func(f func(phases) time.Duration) string {
			var ds []time.Duration
			for _, p := range ps {
				ds = append(ds, f(p))
			}
			if len(ds) == 0 {
				return "-"
			}
			slices.Sort(ds)
			r := func(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }
			return r(ds[0]) + " / " + r(ds[len(ds)/2]) + " / " + r(ds[len(ds)-1])
		}
		fmt.Fprintf(&out, "%-14s %-24s %-24s %-24s %-24s\n", kind,
			col(func(p phases) time.Duration { return p.detection }), col(func(p phases) time.Duration { return p.election }),
			col(func(p phases) time.Duration { return p.promotion }), col(func(p phases) time.Duration { return p.write }))
	}
	fmt.Print(out.String())
}

func benchKind(b *testing.B, kind string, runs int) []phases {
	var out []phases
	if kind == "node-kill" || kind == "node-cut" {
		// A killed node's Consul server takes the cluster's quorum margin
		// with it until autopilot has made it a voter again after its
		// return: a fresh cluster per run, each its own sub-benchmark so
		// that the cluster before it is gone and takes no CPU from it.
		for run := range runs {
			b.Run(fmt.Sprintf("run-%d", run+1), func(b *testing.B) {
				var c *tcluster
				var net *testenv.Net
				if kind == "node-cut" {
					c, net = newHostCluster(b, nil)
				} else {
					c = newCluster(b, nil)
				}
				act := c.waitHealthy(startTimeout)
				act.exec(c.t, "create table rows (id int primary key)")
				out = append(out, benchOnce(b, c, net, c.waitHealthy(rejoinTimeout), kind, run))
			})
		}
		return out
	}
	c := newCluster(b, nil)
	act := c.waitHealthy(startTimeout)
	act.exec(c.t, "create table rows (id int primary key)")
	for run := range runs {
		out = append(out, benchOnce(b, c, nil, c.waitHealthy(rejoinTimeout), kind, run))
	}
	return out
}

// benchOnce fails act in the way kind says and measures the failover.
func benchOnce(b *testing.B, c *tcluster, net *testenv.Net, act *tnode, kind string, run int) phases {
	var others []*tnode
	for _, n := range c.nodes {
		if n != act {
			others = append(others, n)
		}
	}
	kv := others[0].consul.Client(c.t).KV()
	answered := make(chan struct{}) // the switchover's answer, before the cluster goes
	start := time.Now()
	switch kind {
	case "postgres-kill":
		_ = syscall.Kill(act.postmasterPID(c.t), syscall.SIGKILL)
	case "node-kill":
		c.killNode(act)
	case "node-cut":
		net.Isolate(act.host)
		c.killNode(act)
	case "switchover":
		body := strings.NewReader(`{"target": "` + others[0].name + `"}`)
		go func() {
			defer close(answered)
			resp, err := http.Post(act.apiURL()+"/v1/cluster/switchover", "application/json", body)
			if err != nil {
				b.Errorf("switchover: %v", err)
				return
			}
			defer resp.Body.Close()
			msg, _ := io.ReadAll(resp.Body)
			switch resp.StatusCode {
			case http.StatusOK:
			case http.StatusConflict:
				// The role moved, to another node than asked: still a
				// handover, measured as one.
				fmt.Printf("switchover run %d: %s\n", run+1, msg)
			default:
				b.Errorf("switchover: %s %s", resp.Status, msg)
			}
		}()
	}
	p := measure(c, kv, act, start, 10_000_000*(run+1))
	if kind == "switchover" {
		select {
		case <-answered:
		case <-time.After(30 * time.Second):
			b.Errorf("switchover: no answer 30 s after the new active took a write")
		}
	}
	fmt.Printf("%s run %d: detection %v, election %v, promotion %v, first write %v\n", kind, run+1,
		p.detection.Round(time.Millisecond), p.election.Round(time.Millisecond), p.promotion.Round(time.Millisecond), p.write.Round(time.Millisecond))
	return p
}

// measure polls, every 10 ms, the leader key through a surviving Consul
// server and /status of the other nodes until one of them takes a write.
func measure(c *tcluster, kv *api.KV, old *tnode, start time.Time, id int) phases {
	var p phases
	deadline := start.Add(nodeKillBound)
	for time.Now().Before(deadline) {
		// Under a timeout: a read forwarded to a Consul leader whose host
		// went silent waits for the connection's keepalive (30 s).
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		pair, _, err := kv.Get("understudy/t/leader", (&api.QueryOptions{}).WithContext(ctx))
		cancel()
		if err == nil && pair != nil {
			if p.detection == 0 && pair.Session == "" {
				p.detection = time.Since(start)
			}
			if p.detection != 0 && p.election == 0 && pair.Session != "" {
				p.election = time.Since(start)
			}
		}
		if p.election != 0 {
			for _, n := range c.nodes {
				if n == old || n.statusCode() != http.StatusOK {
					continue
				}
				if p.promotion == 0 {
					p.promotion = time.Since(start)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				err := n.write(ctx, id)
				cancel()
				if err == nil {
					p.write = time.Since(start)
					return p
				}
			}
		}
		time.Sleep(10 * time.Millisecond) // the sampling period of the measurement
	}
	c.t.Fatalf("no failover within %v: %+v", nodeKillBound, p)
	return p
}
