package main

import (
	"bytes"
	"net/url"
	"strings"
	"testing"

	"github.com/understudy-ha/understudy/internal/nodeapi"
)

func runHAProxyConfig(args ...string) (string, error) {
	cmd := newHAProxyConfigCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestHAProxyConfigCommand(t *testing.T) {
	t.Setenv(nodeapi.EnvProfiles, t.TempDir()+"/profiles.json")
	t.Setenv(nodeapi.EnvProfile, "")
	srv := fakeAPI(t)
	if _, err := run(t, "profile", "add", "prod", "--nodes", strings.TrimPrefix(srv.URL, "http://")); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)

	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--profile", "prod"}, []string{
			`understudy cluster "prod"`, "from profile prod", "plain HTTP",
			"bind :5432", "server mgr-1 127.0.0.1:5432 check port " + u.Port() + "\n",
		}},
		{[]string{"--node", "mgr-1=10.0.0.5", "--node", "mgr-2=10.0.0.6", "--ca-file", "/etc/haproxy/ca.pem", "--bind", "10.0.0.2:6432", "--app-bind", ":443", "--app-port", "8443"}, []string{
			"bind 10.0.0.2:6432", "ca-file /etc/haproxy/ca.pem",
			"server mgr-2 10.0.0.6:5432 check port 8008 check-sni mgr-2 verifyhost mgr-2",
			"frontend app\n    bind :443", "server mgr-1 10.0.0.5:8443 check port 8008",
		}},
	}
	for _, tc := range tests {
		out, err := runHAProxyConfig(tc.args...)
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output\n%s\ndoes not hold %q", tc.args, out, w)
			}
		}
	}

	errs := []struct {
		args []string
		want string
	}{
		{[]string{"--profile", "prod", "--ca-file", "/ca.pem"}, "leave --ca-file out"},
		{[]string{"--profile", "nope"}, "understudy profile add nope"},
		{[]string{"--node", "mgr-1=10.0.0.5"}, "--ca-file is needed with --node"},
		{[]string{"--node", "mgr-1", "--ca-file", "/ca.pem"}, "write NAME=HOST"},
		{[]string{"--node", "a=10.0.0.5", "--ca-file", "/ca.pem", "--profile", "prod"}, "exclude each other"},
		{[]string{"--node", "a=10.0.0.5", "--ca-file", "/ca.pem", "--app-port", "443"}, "--app-bind and --app-port go together"},
		{[]string{"--node", "a=10.0.0.5", "--ca-file", "/ca.pem", "--bind", "5432"}, "write ADDR:PORT"},
	}
	for _, tc := range errs {
		_, err := runHAProxyConfig(tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one with %q", tc.args, err, tc.want)
		}
	}
}
