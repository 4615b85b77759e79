package config

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, always returns a Config or an *Error, and
// whatever it accepts renders with HCL() into a file that parses back to the
// same Config.
func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(full))
	f.Add([]byte(""))
	f.Add([]byte(minimal + "postgres {\n  maximum_lag_on_failover = 1025\n  connect_timeout = \"1h2m3.5s\"\n}\n"))
	f.Add([]byte(minimal + "checks {\n  interval = \"5 s\"\n  ttl_multiplier = -1\n}\n"))
	f.Add([]byte(minimal + "service \"x\" {\n  start = [\"/bin/x\", \"$${HOME}\", \"%%{y}\", \"a\\\"b\\n\"]\n  stop = [\"s\"]\n  status = [\"t\"]\n}\n"))
	f.Add([]byte(minimal + "node {\n}\nservice {\n}\nnode \"x\" {\n  foo {\n  }\n}\n"))
	f.Add([]byte("cluster { name = \"prod\"  kv_prefix = \"u\" }\n"))
	f.Add([]byte("cluster:\n  name: prod\n"))
	f.Add([]byte(minimal + "api {\n  listen = var.x\n  basic_auth_file = null\n}\nconsul {\n  token = <<EOT\nsecret\nEOT\n}\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		cfg, err := Parse(src, "f.hcl")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || cfg != nil || len(e.Problems) == 0 {
				t.Fatalf("Parse returned %v, %#v", cfg, err)
			}
			for _, p := range e.Problems {
				if p.Line < 1 || strings.Contains(p.Msg, "\n") {
					t.Fatalf("problem without a line or on several lines: %#v", p)
				}
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v", err)
		}
		roundTrip(t, cfg)
	})
}
