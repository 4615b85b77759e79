package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// NodeOverride is node.name and node.address given on the command line of
// cluster start and cluster join (--cluster-node-name, --cluster-host-ip,
// as the Conductor Manager CLI has them); empty fields leave the file's.
//
// They are written into the node's configuration file rather than held for
// one run: the daemons, node start and config check all read that file, and
// a name or address that lived only in one command's flags would be lost at
// the next restart, with the node then registered under two names. The edit
// keeps the file's comments and layout.
type NodeOverride struct {
	Name    string
	Address string
}

// Check validates the flags as Validate validates node.name and
// node.address, but for --cluster-host-ip an IP address only: it is what
// the other nodes reach this one at, and the Conductor CLI takes no host
// names there.
func (o NodeOverride) Check() error {
	var errs []error
	if o.Name != "" && !validName(o.Name) {
		example := `"mgr-1"`
		if s := sanitizeName(o.Name); s != "" {
			example = quote(s)
		}
		errs = append(errs, fmt.Errorf("--cluster-node-name %s is not a valid node name; use 1 to 63 lowercase letters, digits and '-', not starting or ending with '-', like %s", quote(o.Name), example))
	}
	if o.Address != "" && net.ParseIP(o.Address) == nil {
		fix := "write the IP address the other nodes reach this one at, like 10.0.0.5 (host names are not taken)"
		if h, _, err := net.SplitHostPort(o.Address); err == nil && net.ParseIP(h) != nil {
			fix = "write it without the port: " + h
		}
		errs = append(errs, fmt.Errorf("--cluster-host-ip %s is not an IP address; %s", quote(o.Address), fix))
	}
	return errors.Join(errs...)
}

// Apply returns src, the configuration file at path, with the override's
// fields set in its node block (added when it has none).
func (o NodeOverride) Apply(src []byte, path string) ([]byte, error) {
	f, diags := hclwrite.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s: %w", path, diags)
	}
	node := f.Body().FirstMatchingBlock("node", nil)
	if node == nil {
		node = f.Body().AppendNewBlock("node", nil)
	}
	if o.Name != "" {
		node.Body().SetAttributeValue("name", cty.StringVal(o.Name))
	}
	if o.Address != "" {
		node.Body().SetAttributeValue("address", cty.StringVal(o.Address))
	}
	return f.Bytes(), nil
}

// WriteNodeOverride checks o, sets it in the file at path and checks that
// the result parses and validates before it replaces the file (atomically,
// with the file's mode). It reports whether the file changed.
func WriteNodeOverride(path string, o NodeOverride) (bool, error) {
	if o == (NodeOverride{}) {
		return false, nil
	}
	if err := o.Check(); err != nil {
		return false, err
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read configuration: %w", err)
	}
	out, err := o.Apply(src, path)
	if err != nil {
		return false, err
	}
	if bytes.Equal(out, src) {
		return false, nil
	}
	if _, err := Parse(out, path); err != nil {
		return false, fmt.Errorf("%s with --cluster-node-name/--cluster-host-ip set in it:\n%w", path, err)
	}
	st, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".understudy-hcl-*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w; run as a user who may write it", path, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if _, err := tmp.Write(out); err != nil {
		tmp.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := errors.Join(tmp.Chmod(st.Mode().Perm()), tmp.Sync(), tmp.Close()); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
