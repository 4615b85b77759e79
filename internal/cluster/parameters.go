package cluster

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ParametersPrefix is how an operator names a cluster-wide PostgreSQL
// parameter on the command line: postgres.parameters.work_mem=64MB, as the
// HCL block would name it.
const ParametersPrefix = "postgres.parameters."

// Parameters are the cluster-wide PostgreSQL parameters at
// postgres/parameters: set with `understudy cluster config set`, written
// by every node into its data directory and applied by a reload, or by a
// restart for those PostgreSQL reads at start only (cluster restart
// --pending). One JSON document, changed by CAS, so a change of several
// parameters reaches every node whole.
type Parameters struct {
	Values map[string]string `json:"values"`
	// By and At are who made the last change and when.
	By string    `json:"by,omitempty"`
	At time.Time `json:"at"`
}

// ParameterChange is one request to change the parameters: the values to
// set and the names to remove.
type ParameterChange struct {
	Set   map[string]string `json:"set,omitempty"`
	Unset []string          `json:"unset,omitempty"`
}

// paramName is PostgreSQL's GUC name syntax: a letter or underscore, then
// letters, digits and underscores, with one dot for an extension's own
// (a "custom" variable such as pg_stat_statements.max).
var paramName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// ValidParameterName tells whether name can be a PostgreSQL parameter.
// Whether this PostgreSQL has it, and whether understudy leaves it to the
// operator, are asked elsewhere (postgres.CheckParameter).
func ValidParameterName(name string) error {
	if len(name) > 63 || !paramName.MatchString(name) {
		return fmt.Errorf("%q is not a PostgreSQL parameter name (letters, digits and _, like work_mem or pg_stat_statements.max)", name)
	}
	return nil
}

// ValidParameterValue refuses what postgresql.conf cannot hold: a line
// break or another control character would end the line, or hide what
// follows.
func ValidParameterValue(name, value string) error {
	for _, r := range value {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%s: the value holds a control character (%U); write it on one line", name, r)
		}
	}
	return nil
}

// ParseParameterSetting reads one KEY=VALUE of `cluster config set`: KEY is
// postgres.parameters.NAME.
func ParseParameterSetting(kv string) (name, value string, err error) {
	key, value, ok := strings.Cut(kv, "=")
	if !ok {
		return "", "", fmt.Errorf("%q: write %sNAME=VALUE, like %swork_mem=64MB", kv, ParametersPrefix, ParametersPrefix)
	}
	name, err = ParseParameterKey(strings.TrimSpace(key))
	return name, strings.TrimSpace(value), err
}

// ParseParameterKey reads the KEY of `cluster config set` and `unset`.
func ParseParameterKey(key string) (string, error) {
	name, ok := strings.CutPrefix(key, ParametersPrefix)
	if !ok {
		return "", fmt.Errorf("%q: only PostgreSQL parameters are set cluster-wide; write %sNAME, like %swork_mem", key, ParametersPrefix, ParametersPrefix)
	}
	name = strings.ToLower(name)
	if err := ValidParameterName(name); err != nil {
		return "", err
	}
	return name, nil
}

// SecretParameter says whether a parameter's value may hold a credential
// (a command line with a password, a connection string): its changes are
// recorded by name only in events and logs, which more people read than
// the parameters key.
func SecretParameter(name string) bool {
	name = strings.ToLower(name)
	if strings.HasSuffix(name, "_command") {
		return true
	}
	for _, s := range []string{"conninfo", "password", "passphrase", "secret"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// Apply returns p's values with c applied, and a one-line account of what
// changed ("" when nothing does). PostgreSQL's names are case-insensitive:
// names are kept in lower case.
func (p Parameters) Apply(c ParameterChange) (map[string]string, string) {
	out := maps.Clone(p.Values)
	if out == nil {
		out = map[string]string{}
	}
	var said []string
	for _, n := range slices.Sorted(maps.Keys(c.Set)) {
		v := c.Set[n]
		n = strings.ToLower(n)
		if old, ok := out[n]; ok && old == v {
			continue
		}
		out[n] = v
		if SecretParameter(n) {
			said = append(said, n+" changed (value not recorded)")
		} else {
			said = append(said, n+"="+v)
		}
	}
	for _, n := range c.Unset {
		n = strings.ToLower(n)
		if _, ok := out[n]; !ok {
			continue
		}
		delete(out, n)
		said = append(said, "unset "+n)
	}
	return out, strings.Join(said, ", ")
}
