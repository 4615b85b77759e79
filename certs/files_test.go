package certs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

func TestReadPaths(t *testing.T) {
	p := ReadPaths("/etc/understudy/tls")
	want := Paths{
		Dir:   "/etc/understudy/tls",
		CA:    "/etc/understudy/tls/ca.pem",
		CAKey: "/etc/understudy/tls/ca-key.pem",
		Cert:  "/etc/understudy/tls/node.pem",
		Key:   "/etc/understudy/tls/node-key.pem",
	}
	if p != want {
		t.Errorf("ReadPaths = %+v, want %+v", p, want)
	}
}

func TestWriteFilesModesAndContents(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	n := issue(t, ca, "n1", now)
	dir := filepath.Join(t.TempDir(), "tls") // created by WriteFiles

	// Our own ids: chown to them works without root and exercises the path.
	p, err := WriteFiles(dir, ca, true, n, os.Getuid(), os.Getgid())
	if err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	if p != ReadPaths(dir) {
		t.Errorf("WriteFiles returned %+v, want ReadPaths(dir)", p)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
		data []byte
	}{
		{p.CA, 0o644, ca.CertPEM},
		{p.CAKey, 0o600, ca.KeyPEM},
		{p.Cert, 0o600, n.CertPEM},
		{p.Key, 0o600, n.KeyPEM},
	} {
		fi, err := os.Stat(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.mode {
			t.Errorf("%s: mode %v, want %v", filepath.Base(f.path), fi.Mode().Perm(), f.mode)
		}
		if got, _ := os.ReadFile(f.path); !bytes.Equal(got, f.data) {
			t.Errorf("%s: contents differ", filepath.Base(f.path))
		}
	}
	// What was written is what LoadCA and LoadNodeCert read back.
	caPEM, _ := os.ReadFile(p.CA)
	caKey, _ := os.ReadFile(p.CAKey)
	if _, err := LoadCA(caPEM, caKey); err != nil {
		t.Errorf("LoadCA from the written files: %v", err)
	}
	assertNoTempFiles(t, dir)
}

func TestWriteFilesWithoutCAKey(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	dir := t.TempDir()
	p, err := WriteFiles(dir, ca, false, issue(t, ca, "n1", now), -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	if p.CAKey != "" {
		t.Errorf("Paths.CAKey = %q, want empty when the CA key was not written", p.CAKey)
	}
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); !os.IsNotExist(err) {
		t.Errorf("ca-key.pem exists (err %v), want no file", err)
	}
	if _, err := WriteFiles(dir, ca, false, nil, -1, -1); err == nil {
		t.Error("WriteFiles without a node certificate succeeded")
	}
}

// Replacing the files renames new ones into place: a reader that opened the
// old certificate keeps reading it whole, the path shows the new one at once,
// and no temporary file is left behind.
func TestWriteFilesAtomicReplace(t *testing.T) {
	now := time.Now()
	ca := newTestCA(t, "prod", now)
	old, renewed := issue(t, ca, "n1", now), issue(t, ca, "n1", now)
	dir := t.TempDir()
	p, err := WriteFiles(dir, ca, true, old, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(p.Cert)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(p.Cert)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	if _, err := WriteFiles(dir, ca, true, renewed, -1, -1); err != nil {
		t.Fatal(err)
	}
	after, err := os.Stat(p.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(before, after) {
		t.Error("node.pem was rewritten in place, not replaced by rename")
	}
	if got, _ := io.ReadAll(reader); !bytes.Equal(got, old.CertPEM) {
		t.Error("a reader of the old node.pem saw changed contents")
	}
	if got, _ := os.ReadFile(p.Cert); !bytes.Equal(got, renewed.CertPEM) {
		t.Error("node.pem does not hold the renewed certificate")
	}
	if after.Mode().Perm() != 0o600 {
		t.Errorf("replaced node.pem has mode %v, want 0600", after.Mode().Perm())
	}
	key, _ := os.ReadFile(p.Key)
	if _, err := LoadNodeCert(renewed.CertPEM, key); err != nil {
		t.Errorf("node-key.pem does not match the renewed certificate: %v", err)
	}
	assertNoTempFiles(t, dir)
}

func assertNoTempFiles(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

func TestConsulTLSHCL(t *testing.T) {
	p := ReadPaths("/etc/understudy/tls")
	key, err := GossipKey()
	if err != nil {
		t.Fatal(err)
	}
	text := ConsulTLSHCL(p, key, ConsulHTTPSPort)
	t.Log("\n" + text)
	for _, want := range []string{
		`ca_file         = "/etc/understudy/tls/ca.pem"`,
		`cert_file       = "/etc/understudy/tls/node.pem"`,
		`key_file        = "/etc/understudy/tls/node-key.pem"`,
		"verify_incoming = true",
		"verify_outgoing = true",
		"verify_server_hostname = true",
		`encrypt                 = "` + key + `"`,
		"encrypt_verify_incoming = true",
		"https = 8501",
		"http  = -1",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ConsulTLSHCL lacks %q", want)
		}
	}
	if strings.Contains(text, "ca-key.pem") {
		t.Error("ConsulTLSHCL mentions the CA key; Consul must not get it")
	}

	// The text is well-formed HCL with the blocks where Consul expects them.
	f, diags := hclsyntax.ParseConfig([]byte(text), "tls.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("ConsulTLSHCL is not valid HCL: %v", diags)
	}
	body := f.Body.(*hclsyntax.Body)
	var blocks []string
	for _, b := range body.Blocks {
		blocks = append(blocks, b.Type)
		if b.Type == "tls" {
			for _, inner := range b.Body.Blocks {
				blocks = append(blocks, "tls."+inner.Type)
			}
		}
	}
	if got, want := strings.Join(blocks, " "), "tls tls.defaults tls.internal_rpc ports"; got != want {
		t.Errorf("blocks = %q, want %q", got, want)
	}

	// A path with a quote stays one string.
	odd := ConsulTLSHCL(ReadPaths(`/tmp/a"b`), key, 18501)
	if _, diags := hclsyntax.ParseConfig([]byte(odd), "odd.hcl", hcl.InitialPos); diags.HasErrors() {
		t.Errorf("a path with a quote breaks the HCL: %v", diags)
	}
}

// TestCopyFilesTakesTheDirectorysOwner: the copies hold what the node's
// files hold, the key and certificate 0600 and the CA 0644, owned by the
// directory's owner, without the CA key.
func TestCopyFilesTakesTheDirectorysOwner(t *testing.T) {
	ca, err := NewCA("t", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	nc, err := ca.IssueNode("n1", "dc1", []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	src, err := WriteFiles(t.TempDir(), ca, true, nc, -1, -1)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "copies")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	}
	dst, err := CopyFiles(src, dir)
	if err != nil {
		t.Fatal(err)
	}
	dfi, _ := os.Stat(dir)
	wantUID, wantGID := ownerOf(dfi)
	for _, f := range []struct {
		from, to string
		mode     os.FileMode
	}{{src.CA, dst.CA, 0o644}, {src.Key, dst.Key, 0o600}, {src.Cert, dst.Cert, 0o600}} {
		a, _ := os.ReadFile(f.from)
		b, err := os.ReadFile(f.to)
		if err != nil || string(a) != string(b) {
			t.Fatalf("%s is not a copy of %s: %v", f.to, f.from, err)
		}
		fi, _ := os.Stat(f.to)
		if uid, gid := ownerOf(fi); fi.Mode().Perm() != f.mode || uid != wantUID || gid != wantGID {
			t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", f.to, fi.Mode().Perm(), uid, gid, f.mode, wantUID, wantGID)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil || dst.CAKey != "" {
		t.Error("the CA key was copied")
	}
}
