package files

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"golang.org/x/crypto/bcrypt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/understudy-ha/understudy/certs"
)

// savedSelfID is the device ID of the node that saved
// testdata/saved-config.xml (node-b of two, after Apply).
const savedSelfID = "AJ7OJGV-23AY7MW-52QWGGM-HPWMUUA-S7QICVS-CBBD2NE-YIZVCC2-EEMOEQK"

func testSetup(t *testing.T) Setup {
	t.Helper()
	return Setup{
		Home:       filepath.Join(t.TempDir(), "syncthing"),
		NodeName:   `node-a <&">`, // escaped in XML
		Listen:     "127.0.0.1:22001",
		APIAddress: "127.0.0.1:8385",
	}
}

// writtenConfig is config.xml as Prepare writes it, read with the element
// names of Syncthing's lib/config (which this module cannot import: it needs
// modules go.mod does not list). The integration tests check that the
// running Syncthing reads the same values.
type writtenConfig struct {
	Version int `xml:"version,attr"`
	Devices []struct {
		ID        string   `xml:"id,attr"`
		Name      string   `xml:"name,attr"`
		Addresses []string `xml:"address"`
	} `xml:"device"`
	Folders []struct {
		ID    string `xml:"id,attr"`
		Inner string `xml:",innerxml"`
	} `xml:"folder"`
	GUI struct {
		Enabled  bool   `xml:"enabled,attr"`
		TLS      bool   `xml:"tls,attr"`
		Address  string `xml:"address"`
		User     string `xml:"user"`
		Password string `xml:"password"`
		APIKey   string `xml:"apikey"`
	} `xml:"gui"`
	Options struct {
		Elements []struct {
			XMLName xml.Name
			Value   string `xml:",chardata"`
		} `xml:",any"`
	} `xml:"options"`
}

func readConfig(t *testing.T, home string) writtenConfig {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(home, configName))
	if err != nil {
		t.Fatal(err)
	}
	var cfg writtenConfig
	if err := xml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("config.xml: %v\n%s", err, data)
	}
	return cfg
}

// options returns each option element's values.
func (c writtenConfig) options() map[string][]string {
	out := map[string][]string{}
	for _, e := range c.Options.Elements {
		out[e.XMLName.Local] = append(out[e.XMLName.Local], e.Value)
	}
	return out
}

func TestPrepareWritesConfig(t *testing.T) {
	s := testSetup(t)
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	assertMode(t, s.Home, homeMode)
	for _, name := range []string{certName, keyName, apiKeyName, configName} {
		assertMode(t, filepath.Join(s.Home, name), secretMode)
	}
	cfg := readConfig(t, s.Home)
	if cfg.Version != configVersion {
		t.Errorf("version %d, want %d", cfg.Version, configVersion)
	}
	// Exactly these: every other option is Syncthing's default.
	want := map[string][]string{
		"listenAddress":         {"tcp://127.0.0.1:22001"},
		"globalAnnounceEnabled": {"false"},
		"localAnnounceEnabled":  {"false"},
		"reconnectionIntervalS": {"10"},
		"relaysEnabled":         {"false"},
		"startBrowser":          {"false"},
		"natEnabled":            {"false"},
		"urAccepted":            {"-1"},
		"autoUpgradeIntervalH":  {"0"},
		"crashReportingEnabled": {"false"},
	}
	if got := cfg.options(); !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("options\n got %v\nwant %v", got, want)
	}
	key, err := ReadAPIKey(s.Home)
	if err != nil {
		t.Fatal(err)
	}
	if g := cfg.GUI; !g.Enabled || g.TLS || g.Address != s.APIAddress || g.APIKey != key || len(key) < 32 {
		t.Errorf("gui %+v; want plain HTTP on %s with key %q", g, s.APIAddress, key)
	}
	// A user with a password nobody knows: its bcrypt hash, as Syncthing
	// keeps it, and not one of the API key.
	if g := cfg.GUI; g.User != guiUser || !bcryptHash.MatchString(g.Password) {
		t.Errorf("gui user %q password %q; want %q and a bcrypt hash", g.User, g.Password, guiUser)
	} else if bcrypt.CompareHashAndPassword([]byte(g.Password), []byte(key)) == nil {
		t.Error("the GUI password is the API key")
	}
	if len(cfg.Folders) != 0 {
		t.Errorf("folders %v, want none (no default folder)", cfg.Folders)
	}
	id, _ := HomeDeviceID(s.Home)
	if len(cfg.Devices) != 1 || cfg.Devices[0].ID != id || cfg.Devices[0].Name != s.NodeName {
		t.Errorf("devices %+v, want only itself (%s) named %q", cfg.Devices, id, s.NodeName)
	}
}

// The generated identity passes Syncthing's check of a peer certificate
// (lib/connections: CommonName == certName, else VerifyHostname) with the
// default certName, and so do node certificates of the cluster CA.
func TestIdentitiesPassSyncthingNameCheck(t *testing.T) {
	s := testSetup(t)
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	generated := leaf(t, filepath.Join(s.Home, certName), filepath.Join(s.Home, keyName))
	if generated.Subject.CommonName != syncthingCertName {
		t.Errorf("generated certificate CN %q, want %q", generated.Subject.CommonName, syncthingCertName)
	}
	if pub, ok := generated.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("generated key is %T, want ECDSA P-256", generated.PublicKey)
	}
	certFile, keyFile := nodeCert(t, "node-b")
	node := leaf(t, certFile, keyFile)
	for name, c := range map[string]*x509.Certificate{"generated": generated, "node": node} {
		if c.Subject.CommonName != syncthingCertName {
			if err := c.VerifyHostname(syncthingCertName); err != nil {
				t.Errorf("%s certificate fails Syncthing's name check: %v", name, err)
			}
		}
	}
}

func TestPrepareIsIdempotent(t *testing.T) {
	s := testSetup(t)
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, s.Home)
	time.Sleep(10 * time.Millisecond) // a rewrite would change the mtime
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, s.Home)
	for name, b := range before {
		if a := after[name]; a != b {
			t.Errorf("%s changed on the second Prepare:\nbefore %s\nafter  %s", name, b, a)
		}
	}
}

// Syncthing saves Apply's devices and folders into config.xml in its own
// full format (testdata/saved-config.xml is one that v1.30.0 wrote); a later
// Prepare changes the addresses and keeps them as they were.
func TestPrepareKeepsDevicesAndFolders(t *testing.T) {
	s := testSetup(t)
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	myID, err := HomeDeviceID(s.Home)
	if err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile("testdata/saved-config.xml")
	if err != nil {
		t.Fatal(err)
	}
	// The file is a node's whose ID was savedSelfID; make it this one's.
	saved = bytes.ReplaceAll(saved, []byte(savedSelfID), []byte(myID))
	if err := os.WriteFile(filepath.Join(s.Home, configName), saved, secretMode); err != nil {
		t.Fatal(err)
	}
	before := readConfig(t, s.Home)

	s.Listen, s.APIAddress = "127.0.0.1:23001", "127.0.0.1:9385"
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	got := readConfig(t, s.Home)
	if l := got.options()["listenAddress"]; !slices.Equal(l, []string{"tcp://127.0.0.1:23001"}) || got.GUI.Address != s.APIAddress {
		t.Errorf("listen %q gui %q, want the new addresses", l, got.GUI.Address)
	}
	if !slices.Equal(got.Folders, before.Folders) || len(got.Folders) == 0 {
		t.Errorf("folders changed:\nbefore %+v\nafter  %+v", before.Folders, got.Folders)
	}
	var self, peers int
	for _, d := range got.Devices {
		if d.ID == myID {
			self++
			if d.Name != s.NodeName {
				t.Errorf("own device named %q, want %q", d.Name, s.NodeName)
			}
		} else {
			peers++
		}
	}
	if self != 1 || peers != len(before.Devices)-1 || peers == 0 {
		t.Errorf("devices %+v, want itself once and the %d peers of the saved file", got.Devices, len(before.Devices)-1)
	}

	again := snapshot(t, s.Home)
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	if after := snapshot(t, s.Home); after[configName] != again[configName] {
		t.Errorf("config.xml with kept elements changed on another Prepare:\n%s\n%s", again[configName], after[configName])
	}
}

func TestPrepareInstallsNodeCertificate(t *testing.T) {
	s := testSetup(t)
	s.CertFile, s.KeyFile = nodeCert(t, "node-a")
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	want, err := DeviceID(s.CertFile, s.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := HomeDeviceID(s.Home); err != nil || got != want {
		t.Fatalf("HomeDeviceID = %q, %v; want the node certificate's %s", got, err, want)
	}
	assertMode(t, filepath.Join(s.Home, keyName), secretMode)
	if got := readConfig(t, s.Home).Devices[0].ID; got != want {
		t.Errorf("own device in config.xml %s, want %s", got, want)
	}

	// A renewed node certificate leaves the identity as it is: the peers
	// know this device by its ID, the hash of the certificate it started
	// with, and the check-runner publishes that ID.
	s.CertFile, s.KeyFile = nodeCert(t, "node-a")
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	renewed, _ := DeviceID(s.CertFile, s.KeyFile)
	if got, _ := HomeDeviceID(s.Home); got != want || renewed == want {
		t.Errorf("after a renewed certificate HomeDeviceID = %s, want the first one %s (the renewed one is %s)", got, want, renewed)
	}
	if got := readConfig(t, s.Home).Devices[0].ID; got != want {
		t.Errorf("own device in config.xml after a renewal %s, want %s", got, want)
	}
}

func TestPrepareRejects(t *testing.T) {
	certA, keyA := nodeCert(t, "node-a")
	_, keyB := nodeCert(t, "node-b")
	tests := []struct {
		name   string
		change func(t *testing.T, s *Setup)
		want   string
	}{
		{"no home", func(t *testing.T, s *Setup) { s.Home = "" }, "no home"},
		{"listen without port", func(t *testing.T, s *Setup) { s.Listen = "127.0.0.1" }, "listen address"},
		{"API address without port", func(t *testing.T, s *Setup) { s.APIAddress = "localhost" }, "API address"},
		{"certificate without key", func(t *testing.T, s *Setup) { s.CertFile = certA }, "give both"},
		{"key of another certificate", func(t *testing.T, s *Setup) { s.CertFile, s.KeyFile = certA, keyB }, "private key does not match"},
		{"missing certificate", func(t *testing.T, s *Setup) { s.CertFile, s.KeyFile = "/nonexistent/cert.pem", keyA }, "no such file"},
		{"broken generated identity", func(t *testing.T, s *Setup) {
			if err := Prepare(*s); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(s.Home, keyName), []byte("garbage"), secretMode); err != nil {
				t.Fatal(err)
			}
		}, "to generate a new one"},
		{"config.xml that is not XML", func(t *testing.T, s *Setup) {
			if err := os.MkdirAll(s.Home, homeMode); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(s.Home, configName), []byte("<configuration"), secretMode); err != nil {
				t.Fatal(err)
			}
		}, "move it aside"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSetup(t)
			tc.change(t, &s)
			err := Prepare(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Prepare = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestReadAPIKeyMissing(t *testing.T) {
	if _, err := ReadAPIKey(t.TempDir()); err == nil || !strings.Contains(err.Error(), "Prepare") {
		t.Fatalf("ReadAPIKey of an empty home = %v, want an error that points at Prepare", err)
	}
	if _, err := Open(t.TempDir(), "127.0.0.1:1"); err == nil {
		t.Fatal("Open of an empty home succeeded")
	}
}

func TestCommand(t *testing.T) {
	got := Command("/usr/bin/syncthing", "/var/lib/understudy/syncthing")
	want := []string{"/usr/bin/syncthing", "serve", "--home=/var/lib/understudy/syncthing",
		"--no-browser", "--no-restart", "--no-upgrade"}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("Command = %q, lacks %q", got, w)
		}
	}
	if got[0] != want[0] || got[1] != "serve" {
		t.Errorf("Command = %q, want %s serve ...", got, want[0])
	}
}

// nodeCert issues a node certificate of a fresh cluster CA, as `cluster
// start` would, and writes it to a temporary directory.
func nodeCert(t *testing.T, node string) (certFile, keyFile string) {
	t.Helper()
	ca, err := certs.NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n, err := ca.IssueNode(node, "dc1", []string{"127.0.0.1"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	if err := os.WriteFile(certFile, n.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, n.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func leaf(t *testing.T, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s has mode %v, want %v", path, got, want)
	}
}

// snapshot is every regular file in dir with its content and mtime.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = fi.ModTime().String() + "\n" + string(data)
	}
	return out
}
