package config

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// binding ties an HCL field name to the Go field it fills. The type of ptr
// decides how the value is read and written: *string, *int, *bool,
// *time.Duration (a string like "1s"), *int64 (a size like "16MB") or
// *[]string. One list of bindings per block serves parsing, rendering and
// the messages, so a field cannot be readable but not printable.
type binding struct {
	name string // as written in the file
	ptr  any
	ex   string // an example value in HCL syntax, for the fix in messages
}

// sizeUnits are PostgreSQL's memory units, powers of 1024 as there, largest
// first so that formatSize picks the shortest spelling.
var sizeUnits = []struct {
	suffix string
	bytes  int64
}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}, {"B", 1}}

// parseSize reads "16MB", "512kB", "1GB", "0" or "1024". Units are
// case-sensitive as in postgresql.conf: "mb" could be read as megabits.
func parseSize(s string) (int64, error) {
	digits := len(s) - len(strings.TrimLeft(s, "0123456789"))
	if digits == 0 {
		return 0, errors.New("no number")
	}
	n, err := strconv.ParseInt(s[:digits], 10, 64)
	if err != nil {
		return 0, err
	}
	unit := s[digits:]
	if unit == "" {
		return n, nil
	}
	for _, u := range sizeUnits {
		if u.suffix == unit {
			if n > math.MaxInt64/u.bytes {
				return 0, errors.New("too large")
			}
			return n * u.bytes, nil
		}
	}
	return 0, fmt.Errorf("unknown unit %q", unit)
}

// formatSize writes n with the largest unit that divides it, so 16 MiB
// prints as "16MB" and an odd number of bytes as a plain number.
func formatSize(n int64) string {
	if n > 0 {
		for _, u := range sizeUnits[:len(sizeUnits)-1] {
			if n%u.bytes == 0 {
				return quote(strconv.FormatInt(n/u.bytes, 10) + u.suffix)
			}
		}
	}
	return strconv.FormatInt(n, 10)
}

// formatDuration is time.Duration.String without the zero tails: "1m"
// rather than "1m0s". time.ParseDuration reads both.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// quote writes s as an HCL string literal, escaping what HCL would
// otherwise read as a template ("${").
func quote(s string) string {
	return string(hclwrite.TokensForValue(cty.StringVal(s)).Bytes())
}

// literal writes the value behind a binding's pointer in HCL syntax.
func literal(ptr any) string {
	switch p := ptr.(type) {
	case *string:
		return quote(*p)
	case *int:
		return strconv.Itoa(*p)
	case *bool:
		return strconv.FormatBool(*p)
	case *time.Duration:
		return quote(formatDuration(*p))
	case *int64:
		return formatSize(*p)
	case *[]string:
		q := make([]string, len(*p))
		for i, s := range *p {
			q[i] = quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	panic(fmt.Sprintf("config: binding of unsupported type %T", ptr))
}

// assign stores v through b.ptr. It returns "" on success, else the rest of
// a message that starts with `path = <as written>`: what is wrong; the fix.
// written is the value's source text.
func assign(b binding, v cty.Value, written string) string {
	if v.IsNull() {
		return fmt.Sprintf("is null; remove the line to use the default, or write %s = %s", b.name, b.ex)
	}
	if !v.IsWhollyKnown() {
		return fmt.Sprintf("cannot be computed here; write a plain value, like %s = %s", b.name, b.ex)
	}
	switch p := b.ptr.(type) {
	case *string:
		return assignString(p, b, v, written)
	case *int:
		return assignInt(p, b, v)
	case *bool:
		return assignBool(p, b, v)
	case *time.Duration:
		return assignDuration(p, b, v, written)
	case *int64:
		return assignSize(p, v)
	case *[]string:
		return assignStrings(p, b, v)
	}
	panic(fmt.Sprintf("config: binding of unsupported type %T", b.ptr))
}

func assignString(p *string, b binding, v cty.Value, written string) string {
	if v.Type() == cty.String {
		*p = v.AsString()
		return ""
	}
	fix := b.ex
	if v.Type() == cty.Number || v.Type() == cty.Bool {
		fix = quote(written)
	}
	return fmt.Sprintf("is %s, not a string; write %s = %s", typeName(v), b.name, fix)
}

func assignInt(p *int, b binding, v cty.Value) string {
	switch v.Type() {
	case cty.Number:
		f := v.AsBigFloat()
		if !f.IsInt() {
			return fmt.Sprintf("is not a whole number; write a whole number, like %s = %s", b.name, b.ex)
		}
		i, acc := f.Int64()
		if acc != big.Exact || i > math.MaxInt || i < math.MinInt {
			return fmt.Sprintf("is too large; write a number like %s = %s", b.name, b.ex)
		}
		*p = int(i)
		return ""
	case cty.String:
		if n, err := strconv.Atoi(strings.TrimSpace(v.AsString())); err == nil {
			return fmt.Sprintf("is a string, not a number; write %s = %d without quotes", b.name, n)
		}
	}
	return fmt.Sprintf("is %s, not a number; write a whole number without quotes, like %s = %s", typeName(v), b.name, b.ex)
}

func assignBool(p *bool, b binding, v cty.Value) string {
	switch v.Type() {
	case cty.Bool:
		*p = v.True()
		return ""
	case cty.String:
		if s := v.AsString(); s == "true" || s == "false" {
			return fmt.Sprintf("is a string, not true or false; write %s = %s without quotes", b.name, s)
		}
	}
	return fmt.Sprintf("is %s, not true or false; write %s = true or %s = false", typeName(v), b.name, b.name)
}

func assignDuration(p *time.Duration, b binding, v cty.Value, written string) string {
	switch v.Type() {
	case cty.String:
		d, err := time.ParseDuration(v.AsString())
		if err != nil {
			return `is not a duration; write a number with a unit, like "5s" or "500ms"`
		}
		*p = d
		return ""
	case cty.Number:
		return fmt.Sprintf(`is a number, not a duration; write it with a unit in quotes, like %s = "%ss"`, b.name, written)
	}
	return fmt.Sprintf("is %s, not a duration; write %s = %s", typeName(v), b.name, b.ex)
}

const sizeFix = `write a whole number with a unit, like "16MB" or "512kB" (units B, kB, MB, GB, TB are powers of 1024), or a number of bytes`

func assignSize(p *int64, v cty.Value) string {
	switch v.Type() {
	case cty.String:
		n, err := parseSize(v.AsString())
		if err != nil {
			return "is not a size; " + sizeFix
		}
		*p = n
		return ""
	case cty.Number:
		f := v.AsBigFloat()
		n, acc := f.Int64()
		switch {
		case !f.IsInt():
			return "is not a whole number of bytes; " + sizeFix
		case acc != big.Exact:
			return "is too large; " + sizeFix
		}
		*p = n
		return ""
	}
	return fmt.Sprintf("is %s, not a size; %s", typeName(v), sizeFix)
}

func assignStrings(p *[]string, b binding, v cty.Value) string {
	t := v.Type()
	if t == cty.String {
		fix := make([]string, 0, 4)
		for _, f := range strings.Fields(v.AsString()) {
			fix = append(fix, quote(f))
		}
		return fmt.Sprintf("is a string, not a list; write %s = [%s]", b.name, strings.Join(fix, ", "))
	}
	if !t.IsTupleType() && !t.IsListType() && !t.IsSetType() {
		return fmt.Sprintf("is %s, not a list of strings; write %s = %s", typeName(v), b.name, b.ex)
	}
	var out []string
	for i, it := 0, v.ElementIterator(); it.Next(); i++ {
		_, e := it.Element()
		if e.IsNull() || e.Type() != cty.String {
			return fmt.Sprintf("has %s at position %d where a string belongs; write every element in quotes, like %s = %s",
				typeName(e), i+1, b.name, b.ex)
		}
		out = append(out, e.AsString())
	}
	*p = out // nil for [], so that an empty list and no list are equal
	return ""
}

func typeName(v cty.Value) string {
	t := v.Type()
	switch {
	case v.IsNull():
		return "null"
	case t == cty.String:
		return "a string"
	case t == cty.Number:
		return "a number"
	case t == cty.Bool:
		return "a bool"
	case t.IsTupleType() || t.IsListType() || t.IsSetType():
		return "a list"
	case t.IsObjectType() || t.IsMapType():
		return "an object"
	}
	return t.FriendlyName()
}
