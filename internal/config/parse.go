package config

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Load reads, parses and validates the file at path, and checks the paths
// it names (CheckPaths). A file that cannot be read is a plain wrapped
// error (errors.Is(err, fs.ErrNotExist) works); a file with problems is an
// *Error listing every one of them.
func Load(path string) (*Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	c, err := Parse(src, path)
	if err != nil {
		return nil, err
	}
	// Load reads the file as it is used, on this machine: the paths it
	// names must be there too. Parse alone stays pure.
	if err := c.CheckPaths(); err != nil {
		return nil, err
	}
	return c, nil
}

// Parse reads src, HCL native syntax, as if loaded from filename: defaults
// for what is not written, then the derived defaults (postgres.data_dir from
// node.data_dir, postgres.host from node.address), then Validate. It returns
// either a valid Config or an *Error, never both.
func Parse(src []byte, filename string) (*Config, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		// The body of a file that does not parse is a guess; decoding it
		// would add noise to the one error that matters.
		return nil, asError(syntaxProblems(filename, diags))
	}
	d := &decoder{
		src:  src,
		info: &source{file: filename, lines: map[string]int{}, bad: map[string]bool{}},
	}
	c := base()
	c.Path = filename
	c.src = d.info
	d.file(c, f.Body.(*hclsyntax.Body))
	c.deriveDefaults()
	if err := asError(append(d.problems, c.validate()...)); err != nil {
		return nil, err
	}
	return c, nil
}

// source remembers where each field of a parsed file was written. Keys are
// "node", "node.priority" for a singleton block and "service.0",
// "service.0.start" for the first service block, whatever its label.
type source struct {
	file  string
	lines map[string]int
	bad   map[string]bool // fields already reported while parsing
}

// line is where key was written, else the line of its enclosing block,
// else 1: a field that is missing altogether is reported at the top.
func (s *source) line(key string) int {
	if s == nil {
		return 0
	}
	for {
		if l, ok := s.lines[key]; ok {
			return l
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return 1
		}
		key = key[:i]
	}
}

type decoder struct {
	src      []byte
	info     *source
	problems []Problem
}

func (d *decoder) add(line int, format string, args ...any) {
	d.problems = append(d.problems, Problem{File: d.info.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) file(c *Config, body *hclsyntax.Body) {
	for _, a := range sortedAttributes(body) {
		d.topLevelField(a)
	}
	for _, b := range body.Blocks {
		d.block(c, b)
	}
}

func (d *decoder) block(c *Config, b *hclsyntax.Block) {
	line := b.TypeRange.Start.Line
	t, known := lookupBlock(b.Type)
	if !known {
		d.unknownBlock(b)
		return
	}
	if t.labelled {
		d.labelledBlock(c, b)
		return
	}
	if len(b.Labels) > 0 {
		d.add(b.LabelRanges[0].Start.Line, "block %s takes no name; write %s { ... }", b.Type, b.Type)
		return
	}
	if first, dup := d.info.lines[b.Type]; dup {
		d.add(line, "duplicate %s block (the first is on line %d); move its fields into the first %s block and delete this one",
			b.Type, first, b.Type)
		return
	}
	d.info.lines[b.Type] = line
	d.body(b.Body, b.Type, b.Type, b.Type, c.bindings(b.Type))
}

// labelledBlock decodes one service or files block. Its fields are keyed by
// the block's position, not its label: two blocks may share a label, and
// Validate must still find each one's lines.
func (d *decoder) labelledBlock(c *Config, b *hclsyntax.Block) {
	line := b.TypeRange.Start.Line
	if len(b.Labels) != 1 {
		d.add(line, "block %s needs one name; write %s \"NAME\" { ... }", b.Type, b.Type)
		return
	}
	label := b.Labels[0]
	display := fmt.Sprintf("%s %s", b.Type, quote(label))
	switch b.Type {
	case "service":
		key := fmt.Sprintf("service.%d", len(c.Services))
		d.info.lines[key] = line
		s := Service{Name: label}
		d.body(b.Body, key, "service."+label, display, s.bindings())
		c.Services = append(c.Services, s)
	case "files":
		key := fmt.Sprintf("files.%d", len(c.Files))
		d.info.lines[key] = line
		f := Files{Name: label, Settle: DefaultFilesSettle}
		d.body(b.Body, key, "files."+label, display, f.bindings())
		c.Files = append(c.Files, f)
	case "promote_hook":
		key := fmt.Sprintf("promote_hook.%d", len(c.PromoteHooks))
		d.info.lines[key] = line
		h := Hook{Name: label, Timeout: DefaultHookTimeout}
		d.body(b.Body, key, "promote_hook."+label, display, h.bindings())
		c.PromoteHooks = append(c.PromoteHooks, h)
	}
}

// body decodes the fields of one block. key is the prefix of the source
// keys, path the prefix of field names in messages ("service.rabbitmq"),
// display the block as the operator wrote it (`service "rabbitmq"`).
func (d *decoder) body(body *hclsyntax.Body, key, path, display string, binds []binding) {
	for _, a := range sortedAttributes(body) {
		i := slices.IndexFunc(binds, func(b binding) bool { return b.name == a.Name })
		if i < 0 {
			d.unknownField(a, display, binds)
			continue
		}
		fkey := key + "." + a.Name
		line := a.SrcRange.Start.Line
		d.info.lines[fkey] = line
		written := d.text(a.Expr.Range())
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			d.info.bad[fkey] = true
			d.add(line, "%s.%s = %s cannot be evaluated (%s); write a plain value, like %s = %s",
				path, a.Name, written, oneLine(diags[0].Summary), a.Name, binds[i].ex)
			continue
		}
		if msg := assign(binds[i], v, written); msg != "" {
			d.info.bad[fkey] = true
			d.add(line, "%s.%s = %s %s", path, a.Name, written, msg)
		}
	}
	for _, b := range body.Blocks {
		line := b.TypeRange.Start.Line
		if _, known := lookupBlock(b.Type); known {
			d.add(line, "block %s inside block %s; blocks do not nest, move it to the top level of the file", b.Type, display)
			continue
		}
		d.add(line, "unknown block %q in block %s; %s takes only fields: %s",
			b.Type, display, display, strings.Join(fieldNames(binds), ", "))
	}
}

func (d *decoder) unknownField(a *hclsyntax.Attribute, display string, binds []binding) {
	line := a.NameRange.Start.Line
	names := fieldNames(binds)
	if s := suggest(a.Name, names); s != "" {
		d.add(line, "unknown field %q in block %s; did you mean %q?", a.Name, display, s)
		return
	}
	if owners := blocksWithField(a.Name); len(owners) > 0 {
		d.add(line, "unknown field %q in block %s; %s belongs in the %s block", a.Name, display, a.Name, strings.Join(owners, " or "))
		return
	}
	d.add(line, "unknown field %q in block %s; the fields of %s are %s", a.Name, display, display, strings.Join(names, ", "))
}

func (d *decoder) topLevelField(a *hclsyntax.Attribute) {
	line := a.NameRange.Start.Line
	if owners := blocksWithField(a.Name); len(owners) > 0 {
		d.add(line, "field %q outside any block; move it into the %s block, like %s { %s = ... }",
			a.Name, strings.Join(owners, " or "), owners[0], a.Name)
		return
	}
	d.add(line, "unknown field %q outside any block; the file holds only blocks: %s", a.Name, blockList())
}

func (d *decoder) unknownBlock(b *hclsyntax.Block) {
	line := b.TypeRange.Start.Line
	names := make([]string, len(blockTypes))
	for i, t := range blockTypes {
		names[i] = t.name
	}
	if s := suggest(b.Type, names); s != "" {
		d.add(line, "unknown block %q; did you mean %q?", b.Type, s)
		return
	}
	d.add(line, "unknown block %q; the blocks are %s", b.Type, blockList())
}

func blockList() string {
	var names []string
	for _, t := range blockTypes {
		if t.labelled {
			names = append(names, t.name+` "NAME"`)
		} else {
			names = append(names, t.name)
		}
	}
	return strings.Join(names, ", ")
}

// blocksWithField names the blocks that accept field: the usual slip is a
// right field in the wrong block.
func blocksWithField(field string) []string {
	var owners []string
	c := base()
	for _, t := range blockTypes {
		if slices.Contains(fieldNames(c.bindings(t.name)), field) {
			owners = append(owners, t.name)
		}
	}
	return owners
}

// text is the source of r on one line, shortened: messages quote what the
// operator wrote, not what HCL made of it.
func (d *decoder) text(r hcl.Range) string {
	if r.Start.Byte < 0 || r.End.Byte > len(d.src) || r.Start.Byte > r.End.Byte {
		return "(value)"
	}
	s := oneLine(string(d.src[r.Start.Byte:r.End.Byte]))
	if len(s) > 60 {
		s = strings.ToValidUTF8(s[:57], "") + "..."
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func sortedAttributes(body *hclsyntax.Body) []*hclsyntax.Attribute {
	attrs := make([]*hclsyntax.Attribute, 0, len(body.Attributes))
	for _, a := range body.Attributes {
		attrs = append(attrs, a)
	}
	slices.SortFunc(attrs, func(a, b *hclsyntax.Attribute) int {
		return cmp.Compare(a.SrcRange.Start.Byte, b.SrcRange.Start.Byte)
	})
	return attrs
}

// syntaxHints add the fix where HCL's own message names only the problem.
var syntaxHints = map[string]string{
	"Invalid single-argument block definition": "write the block over several lines, one field per line",
	"Argument or block definition required":    `the file is HCL: blocks like node { ... } holding fields like name = "mgr-1", one per line`,
	"Invalid character encoding":               "save the file as UTF-8",
}

func syntaxProblems(filename string, diags hcl.Diagnostics) []Problem {
	var ps []Problem
	seen := map[Problem]bool{}
	for _, diag := range diags {
		if diag.Severity != hcl.DiagError {
			continue
		}
		line := 1
		if diag.Subject != nil {
			line = diag.Subject.Start.Line
		}
		msg := oneLine(diag.Summary)
		if detail := strings.TrimSuffix(oneLine(diag.Detail), "."); detail != "" {
			msg += "; " + detail
		}
		if hint := syntaxHints[diag.Summary]; hint != "" {
			msg += "; " + hint
		}
		p := Problem{File: filename, Line: line, Msg: msg}
		if !seen[p] {
			seen[p] = true
			ps = append(ps, p)
		}
	}
	return ps
}
