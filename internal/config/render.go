package config

import (
	"strings"

	"github.com/hashicorp/hcl/v2/hclwrite"
)

// HCL renders c as a configuration file: every field of every block, with
// the defaults and derived defaults written out, so that Parse of the result
// yields c again. `understudy config check` prints it so that an operator
// sees what the daemons will actually use.
func (c *Config) HCL() string {
	var b strings.Builder
	for _, t := range blockTypes {
		switch t.name {
		case "service":
			for _, s := range c.Services {
				// A service is either a unit or commands: writing the
				// empty other half would suggest that both are wanted.
				writeBlock(&b, "service "+quote(s.Name), nonEmpty(s.bindings()))
			}
		case "files":
			for _, f := range c.Files {
				writeBlock(&b, "files "+quote(f.Name), f.bindings())
			}
		case "promote_hook":
			for _, h := range c.PromoteHooks {
				writeBlock(&b, "promote_hook "+quote(h.Name), h.bindings())
			}
		default:
			writeBlock(&b, t.name, c.bindings(t.name))
		}
	}
	// hclwrite.Format aligns the '=' of each block as `terraform fmt` does.
	return strings.TrimSuffix(string(hclwrite.Format([]byte(b.String()))), "\n") + "\n"
}

func writeBlock(b *strings.Builder, header string, binds []binding) {
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	b.WriteString(header + " {\n")
	for _, bd := range binds {
		b.WriteString("  " + bd.name + " = " + literal(bd.ptr) + "\n")
	}
	b.WriteString("}\n")
}

// nonEmpty drops the string and list fields that are not set.
func nonEmpty(binds []binding) []binding {
	out := binds[:0]
	for _, b := range binds {
		switch p := b.ptr.(type) {
		case *string:
			if *p == "" {
				continue
			}
		case *[]string:
			if len(*p) == 0 {
				continue
			}
		}
		out = append(out, b)
	}
	return out
}
