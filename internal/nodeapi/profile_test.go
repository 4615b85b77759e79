package nodeapi

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/cluster"
)

func useProfiles(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cfg", "profiles.json")
	t.Setenv(EnvProfiles, path)
	t.Setenv(EnvProfile, "")
	return path
}

func TestProfileStoreRoundTrip(t *testing.T) {
	path := useProfiles(t)
	if ps, err := ListProfiles(); err != nil || len(ps) != 0 {
		t.Fatalf("no file yet: %v, %v", ps, err)
	}
	prod := Profile{Name: "prod", Nodes: []string{"10.0.0.5:8008", "http://10.0.0.6:8008/", "10.0.0.5:8008", "mgr-3"}, BasicAuthFile: "/etc/understudy/api-auth"}
	if err := SaveProfile(prod); err != nil {
		t.Fatal(err)
	}
	if err := SaveProfile(Profile{Name: "dev", Nodes: []string{"127.0.0.1:18008"}}); err != nil {
		t.Fatal(err)
	}
	got, err := LoadProfile("prod")
	if err != nil {
		t.Fatal(err)
	}
	want := Profile{Name: "prod", Nodes: []string{"http://10.0.0.5:8008", "http://10.0.0.6:8008", "http://mgr-3:8008"}, BasicAuthFile: "/etc/understudy/api-auth"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadProfile = %+v\nwant %+v", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("profiles.json mode %v, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Fatalf("directory mode %v, want 0700", di.Mode().Perm())
	}

	// Replacing keeps one profile of the name.
	if err := SaveProfile(Profile{Name: "prod", Nodes: []string{"https://mgr-1:8443"}, CAFile: "/ca.pem"}); err != nil {
		t.Fatal(err)
	}
	ps, err := ListProfiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "dev" || ps[1].Name != "prod" || ps[1].Nodes[0] != "https://mgr-1:8443" {
		t.Fatalf("ListProfiles = %+v", ps)
	}

	if err := RemoveProfile("dev"); err != nil {
		t.Fatal(err)
	}
	if err := RemoveProfile("dev"); !errors.Is(err, ErrUnknownProfile) {
		t.Fatalf("remove twice: %v", err)
	}
	_, err = LoadProfile("dev")
	if !errors.Is(err, ErrUnknownProfile) || !strings.Contains(err.Error(), "understudy profile add dev --nodes") {
		t.Fatalf("LoadProfile(dev) = %v, want how to add it", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}

func TestSaveProfileRefuses(t *testing.T) {
	useProfiles(t)
	for _, p := range []Profile{
		{Name: "", Nodes: []string{"a:1"}},
		{Name: "../x", Nodes: []string{"a:1"}},
		{Name: "prod"},
		{Name: "prod", Nodes: []string{"ftp://a:1"}},
		{Name: "prod", Nodes: []string{"http://a:1/v1/status"}},
		{Name: "prod", Nodes: []string{" "}},
	} {
		if err := SaveProfile(p); err == nil {
			t.Errorf("SaveProfile(%+v) succeeded", p)
		}
	}
}

func TestNormalizeNode(t *testing.T) {
	tests := []struct {
		in   string
		tls  bool
		want string
	}{
		{"10.0.0.5:8008", false, "http://10.0.0.5:8008"},
		{"10.0.0.5:8008", true, "https://10.0.0.5:8008"},
		{"mgr-1", false, "http://mgr-1:8008"},
		{"http://mgr-1:9000/", true, "http://mgr-1:9000"},
		{"https://mgr-1", false, "https://mgr-1:8008"},
		{"[::1]:8008", false, "http://[::1]:8008"},
	}
	for _, tc := range tests {
		got, err := NormalizeNode(tc.in, tc.tls)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeNode(%q, %v) = %q, %v; want %q", tc.in, tc.tls, got, err, tc.want)
		}
	}
}

func TestSelectProfile(t *testing.T) {
	useProfiles(t)
	for _, name := range []string{"prod", "staging"} {
		if err := SaveProfile(Profile{Name: name, Nodes: []string{name + ":8008"}}); err != nil {
			t.Fatal(err)
		}
	}
	sel := func(flag, env string) (string, error) {
		t.Helper()
		t.Setenv(EnvProfile, env)
		p, err := SelectProfile(flag)
		return p.Name + " " + strings.Join(p.Nodes, ","), err
	}
	check := func(flag, env, want string) {
		t.Helper()
		got, err := sel(flag, env)
		if err != nil || got != want {
			t.Errorf("SelectProfile(flag %q, env %q) = %q, %v; want %q", flag, env, got, err, want)
		}
	}
	check("", "", "local "+LocalURL)
	check("", "staging", "staging http://staging:8008")
	check("prod", "staging", "prod http://prod:8008")
	if err := SaveProfile(Profile{Name: "dev", Nodes: []string{"127.0.0.1:18008"}}); err != nil {
		t.Fatal(err)
	}
	check("", "", "dev http://127.0.0.1:18008")
	check("", "staging", "staging http://staging:8008")

	if _, err := sel("nope", ""); !errors.Is(err, ErrUnknownProfile) || !strings.Contains(err.Error(), "understudy profile add nope") {
		t.Errorf("--profile nope: %v", err)
	}
	if _, err := sel("", "nope"); !errors.Is(err, ErrUnknownProfile) || !strings.Contains(err.Error(), "UNDERSTUDY_PROFILE=nope") {
		t.Errorf("UNDERSTUDY_PROFILE=nope: %v", err)
	}
}

func TestProfilesPath(t *testing.T) {
	t.Setenv(EnvProfiles, "")
	t.Setenv("XDG_CONFIG_HOME", "/x/cfg")
	if p, _ := ProfilesPath(); p != "/x/cfg/understudy/profiles.json" {
		t.Errorf("with XDG_CONFIG_HOME: %s", p)
	}
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("HOME", "/home/op")
	if p, _ := ProfilesPath(); p != "/home/op/.config/understudy/profiles.json" {
		t.Errorf("default: %s", p)
	}
	t.Setenv(EnvProfiles, "/tmp/p.json")
	if p, _ := ProfilesPath(); p != "/tmp/p.json" {
		t.Errorf("override: %s", p)
	}
}

func TestCorruptProfilesFile(t *testing.T) {
	path := useProfiles(t)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadProfile("prod"); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want the file named", err)
	}
}

func TestRefreshNodes(t *testing.T) {
	member := func(name, url string) cluster.Member { return cluster.Member{Name: name, APIURL: url} }
	p := Profile{Name: "prod", Nodes: []string{"https://10.0.0.7:8008", "https://10.0.0.5:8008", "https://10.0.0.9:8008"}, CAFile: "/ca.pem"}
	cs := ClusterStatus{Cluster: "prod", Members: []cluster.Member{
		member("mgr-4", "https://10.0.0.8:8008"), member("mgr-1", "https://10.0.0.5:8008"),
		member("mgr-3", "https://10.0.0.7:8008"), member("mgr-2", "https://10.0.0.6:8008"), member("old", ""),
	}}
	ch, err := RefreshNodes(p, cs, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := NodeChanges{
		Nodes:   []string{"https://10.0.0.7:8008", "https://10.0.0.5:8008", "https://10.0.0.6:8008", "https://10.0.0.8:8008"},
		Added:   []string{"https://10.0.0.6:8008", "https://10.0.0.8:8008"},
		Removed: []string{"https://10.0.0.9:8008"},
	}
	if !reflect.DeepEqual(ch, want) {
		t.Fatalf("RefreshNodes = %+v, want %+v", ch, want)
	}
	// An address the operator typed that answered as a member stays, in
	// place of the one the member publishes (behind NAT, say).
	nat := Profile{Name: "prod", Nodes: []string{"https://mgr-3.example.com:8008", "https://10.0.0.5:8008"}, CAFile: "/ca.pem"}
	ch, err = RefreshNodes(nat, cs, map[string]string{"mgr-3": "https://mgr-3.example.com:8008", "mgr-1": "https://10.0.0.5:8008"})
	want = NodeChanges{
		Nodes: []string{"https://mgr-3.example.com:8008", "https://10.0.0.5:8008", "https://10.0.0.6:8008", "https://10.0.0.8:8008"},
		Added: []string{"https://10.0.0.6:8008", "https://10.0.0.8:8008"},
	}
	if err != nil || !reflect.DeepEqual(ch, want) {
		t.Fatalf("RefreshNodes with typed addresses = %+v, %v; want %+v", ch, err, want)
	}
	if _, err := RefreshNodes(p, ClusterStatus{Cluster: "prod", Members: []cluster.Member{member("old", "")}}, nil); err == nil || !strings.Contains(err.Error(), "left as it was") {
		t.Fatalf("no member with an API address: %v", err)
	}
}
