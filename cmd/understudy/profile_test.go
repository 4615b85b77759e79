package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/nodeapi"
)

func TestProfileCommands(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(nodeapi.EnvProfiles, filepath.Join(dir, "profiles.json"))
	t.Setenv(nodeapi.EnvProfile, "")
	t.Chdir(dir)
	if err := os.WriteFile("auth", []byte("ops:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("badauth", []byte("nocolon\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := run(t, "profile", "list")
	if err != nil || !strings.Contains(out, "no profiles in") || !strings.Contains(out, "understudy profile add NAME") {
		t.Fatalf("empty list: %q, %v", out, err)
	}
	out, err = run(t, "profile", "add", "prod", "--nodes", "10.0.0.5:8008,10.0.0.6", "--basic-auth-file", "auth")
	if err != nil || !strings.Contains(out, "profile prod added in ") || !strings.Contains(out, "http://10.0.0.5:8008, http://10.0.0.6:8008") {
		t.Fatalf("add: %q, %v", out, err)
	}
	if _, err := run(t, "profile", "add", "dev", "--nodes", "127.0.0.1:18008"); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, "profile", "list")
	want := "   NAME  NODES                                      CA  CLIENT CERT  BASIC AUTH\n" +
		"*  dev   http://127.0.0.1:18008                     -   -            -\n" +
		"   prod  http://10.0.0.5:8008,http://10.0.0.6:8008  -   -            " + filepath.Join(dir, "auth") + "\n"
	if err != nil || out != want {
		t.Fatalf("list:\n%s\nwant\n%s(%v)", out, want, err)
	}
	if out, err = run(t, "profile", "add", "dev", "--nodes", "127.0.0.1:28008"); err != nil || !strings.Contains(out, "profile dev replaced") {
		t.Fatalf("replace: %q, %v", out, err)
	}
	for _, args := range [][]string{
		{"profile", "add", "x", "--nodes", "a:1", "--basic-auth-file", "missing"},
		{"profile", "add", "x", "--nodes", "a:1", "--basic-auth-file", "badauth"},
		{"profile", "add", "x"},
		{"profile", "remove", "x"},
	} {
		if _, err := run(t, args...); err == nil {
			t.Errorf("%v succeeded", args)
		}
	}
	if out, err = run(t, "profile", "remove", "dev"); err != nil || out != "profile dev removed\n" {
		t.Fatalf("remove: %q, %v", out, err)
	}
	if out, _ = run(t, "profile", "list", "-o", "json"); !strings.Contains(out, `"name": "prod"`) || strings.Contains(out, `"dev"`) {
		t.Fatalf("json list: %s", out)
	}
}
