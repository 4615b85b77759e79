package haproxycfg_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/certs"
	"github.com/understudy-ha/understudy/internal/haproxycfg"
	"github.com/understudy-ha/understudy/internal/testenv"
)

// TestHAProxyAcceptsRendered has the real HAProxy check every golden
// configuration (haproxy -c), with the CA file made real.
func TestHAProxyAcceptsRendered(t *testing.T) {
	testenv.RequireIntegration(t)
	bin := testenv.HAProxyBinary(t)
	caFile, _ := newCA(t)
	for _, tc := range goldenCases() {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.CAFile != "" {
				tc.cfg.CAFile = caFile
			}
			text, err := haproxycfg.Render(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "-c", "-f", file).CombinedOutput()
			if err != nil || strings.Contains(string(out), "[WARNING]") {
				t.Fatalf("haproxy -c: %v\n%s\nconfiguration:\n%s", err, out, text)
			}
		})
	}
}

// TestHAProxyFollowsStatus runs HAProxy with a rendered configuration in
// front of two fake nodes (an HTTPS /status and a TCP server standing for
// PostgreSQL each): connections go to the node that answers 200; when it
// answers 400 and the other 200, new connections go to the other and the
// open ones to the first are cut; a node whose certificate names another
// node is never up.
func TestHAProxyFollowsStatus(t *testing.T) {
	testenv.RequireIntegration(t)
	bin := testenv.HAProxyBinary(t)
	caFile, ca := newCA(t)
	n1, n2 := startFakeNode(t, ca, "n1"), startFakeNode(t, ca, "n2")
	n1.status.Store(http.StatusOK)
	n2.status.Store(http.StatusBadRequest)

	front := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	checks := haproxycfg.DefaultChecks()
	text, err := haproxycfg.Render(haproxycfg.Config{
		PostgresBind: front, CAFile: caFile, Checks: checks,
		Nodes: []haproxycfg.Node{n1.node(), n2.node()},
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	testenv.StartProcess(t, "haproxy", exec.Command(bin, "-db", "-f", file))

	reachesOnly := func(want string) func() error {
		return func() error {
			for range 3 {
				got, err := reach(front)
				if err != nil {
					return err
				}
				if got != want {
					return fmt.Errorf("reached %s, want %s", got, want)
				}
			}
			return nil
		}
	}
	testenv.Eventually(t, 10*time.Second, reachesOnly("n1"))
	open, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	r := bufio.NewReader(open)
	if line, err := r.ReadString('\n'); err != nil || line != "n1\n" {
		t.Fatalf("open connection reached %q, %v; want n1", line, err)
	}

	// The switch: n1 demoted, n2 the active.
	n1.status.Store(http.StatusBadRequest)
	n2.status.Store(http.StatusOK)
	switched := time.Now()
	_ = open.SetReadDeadline(time.Now().Add(checks.MarkedDown() + 2*time.Second))
	if _, err := r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Fatalf("the session to the demoted n1 was not cut within %s: %v", checks.MarkedDown()+2*time.Second, err)
	}
	t.Logf("session to the demoted node cut %s after its first 400 (bound %s plus a check's time)", time.Since(switched).Round(time.Millisecond), checks.MarkedDown())
	testenv.Eventually(t, 5*time.Second, reachesOnly("n2"))

	// n2's API now shows the certificate of another node of the cluster:
	// HAProxy must not take it for n2.
	n2.cert.Store(n1.cert.Load())
	testenv.Eventually(t, 5*time.Second, func() error {
		if got, err := reach(front); err == nil {
			return fmt.Errorf("reached %s through a server whose certificate names n1", got)
		}
		return nil
	})
}

func newCA(t *testing.T) (string, *certs.CA) {
	t.Helper()
	ca, err := certs.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return file, ca
}

// fakeNode is what HAProxy sees of a node: /status over HTTPS with a node
// certificate, and a TCP server in PostgreSQL's place that writes the
// node's name and keeps the connection open.
type fakeNode struct {
	name           string
	status         atomic.Int32
	cert           atomic.Pointer[tls.Certificate]
	apiPort, pPort int
}

func startFakeNode(t *testing.T, ca *certs.CA, name string) *fakeNode {
	t.Helper()
	n := &fakeNode{name: name}
	nc, err := ca.IssueNode(name, "dc1", nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(nc.CertPEM, nc.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	n.cert.Store(&pair)
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(n.status.Load()))
	}))
	// No session tickets: every check is a full handshake, so a swapped
	// certificate is seen at the next check, as a real impostor (another
	// process, whose tickets HAProxy could not resume) would be.
	api.TLS = &tls.Config{
		SessionTicketsDisabled: true,
		GetCertificate:         func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return n.cert.Load(), nil },
	}
	api.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are the point
	api.StartTLS()
	t.Cleanup(api.Close)
	n.apiPort = api.Listener.Addr().(*net.TCPAddr).Port

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	n.pPort = l.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := io.WriteString(c, name+"\n"); err == nil {
					_, _ = io.Copy(io.Discard, c)
				}
			}()
		}
	}()
	return n
}

func (n *fakeNode) node() haproxycfg.Node {
	return haproxycfg.Node{Name: n.name, Address: "127.0.0.1", PostgresPort: n.pPort, APIPort: n.apiPort}
}

// reach connects through HAProxy and returns the name of the node it got
// to; an error when HAProxy had no server up (it closes the connection).
func reach(front string) (string, error) {
	c, err := net.DialTimeout("tcp", front, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("no node reached through %s: %w", front, err)
	}
	return strings.TrimSuffix(line, "\n"), nil
}
