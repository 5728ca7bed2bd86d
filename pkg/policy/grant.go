// Package policy owns what a grant is: its access levels, its validation
// against the S3 and IAM rules, the policy documents that carry grants (one
// user policy holding all of a user's grants, or one group policy per
// grant), their inverses, and a grant group's deterministic name. It is
// pure: no AWS calls.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
)

// Access is an access level a grant gives on its bucket.
type Access string

// The access levels keyvend vends.
const (
	ReadOnly  Access = "read-only"
	WriteOnly Access = "write-only"
	ReadWrite Access = "read-write"
	Full      Access = "full"
)

// Levels lists every access level, in a stable order.
var Levels = []Access{ReadOnly, WriteOnly, ReadWrite, Full}

// Valid reports whether a is one of the known access levels.
func (a Access) Valid() bool {
	for _, l := range Levels {
		if a == l {
			return true
		}
	}
	return false
}

// Grant is access to one bucket, optionally limited to a key prefix.
type Grant struct {
	Bucket string `json:"bucket"`
	Access Access `json:"access"`
	Prefix string `json:"prefix"`
}

// sizingPartition is the longest partition name: sizes checked with it
// hold in every partition.
const sizingPartition = "aws-us-gov"

// MaxPrefixLen bounds a grant's prefix. S3 keys may be 1,024 bytes; the
// bound keeps the prefix, which appears several times in the policy, well
// inside IAM's inline policy limit.
const MaxPrefixLen = 512

// FieldError is one problem with one field of a grant.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

func (e FieldError) Error() string { return e.Field + ": " + e.Detail }

// Validate checks the grant against the S3 bucket naming rules, the prefix
// rules and the IAM inline policy size limit. It returns every problem
// found, with field names relative to the grant.
func (g Grant) Validate() []FieldError {
	var errs []FieldError
	if msg := CheckBucketName(g.Bucket); msg != "" {
		errs = append(errs, FieldError{"bucket", msg})
	}
	if !g.Access.Valid() {
		errs = append(errs, FieldError{"access", fmt.Sprintf("unknown access level %q: want one of read-only, write-only, read-write, full", g.Access)})
	}
	if msg := checkPrefix(g.Prefix); msg != "" {
		errs = append(errs, FieldError{"prefix", msg})
	}
	if len(errs) > 0 {
		return errs
	}
	doc, err := Document(sizingPartition, g)
	if err != nil {
		return []FieldError{{"prefix", err.Error()}}
	}
	if n := Chars(doc); n > MaxGroupInlineBytes {
		errs = append(errs, FieldError{"prefix", fmt.Sprintf("the group policy would be %d characters, over IAM's group inline limit of %d", n, MaxGroupInlineBytes)})
	}
	return errs
}

// CheckBucketName returns why name is not a valid S3 general purpose bucket
// name, or "" when it is.
func CheckBucketName(name string) string {
	switch {
	case name == "":
		return "required"
	case len(name) < 3 || len(name) > 63:
		return fmt.Sprintf("must be 3 to 63 characters, got %d", len(name))
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-') {
			return fmt.Sprintf("invalid character %q: only lowercase letters, digits, '.' and '-' are allowed", r)
		}
	}
	if !isAlnum(name[0]) || !isAlnum(name[len(name)-1]) {
		return "must begin and end with a letter or digit"
	}
	if strings.Contains(name, "..") {
		return "must not contain two adjacent periods"
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return "must not be formatted as an IP address"
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return fmt.Sprintf("must not start with the reserved prefix %q", p)
		}
	}
	for _, s := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(name, s) {
			return fmt.Sprintf("must not end with the reserved suffix %q", s)
		}
	}
	return ""
}

func isAlnum(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }

// checkPrefix returns why p cannot be used as a grant's key prefix, or ""
// when it can. The empty prefix means the whole bucket.
//
// A prefix lands inside a policy's Resource ARN and its s3:prefix
// condition, so anything IAM would interpret is refused: wildcards,
// policy variables, path traversal and characters outside printable ASCII.
func checkPrefix(p string) string {
	if len(p) > MaxPrefixLen {
		return fmt.Sprintf("must be at most %d characters, got %d", MaxPrefixLen, len(p))
	}
	for _, r := range p {
		switch {
		case r < 0x20 || r == 0x7f:
			return "must not contain control characters"
		case r > 0x7e:
			return fmt.Sprintf("invalid character %q: only printable ASCII is allowed", r)
		case r == '*' || r == '?':
			return fmt.Sprintf("must not contain the wildcard %q", r)
		case r == '$':
			return "must not contain '$' (IAM policy variables)"
		}
	}
	if strings.HasPrefix(p, "/") {
		return "must not start with '/'"
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || seg == "." {
			return fmt.Sprintf("must not contain the path segment %q", seg)
		}
	}
	if strings.Contains(p, "..") {
		return "must not contain '..'"
	}
	return ""
}

// GroupName is the IAM group name that carries g. It is deterministic, so
// every user with the same grant shares one group, at most 99 characters
// (IAM allows 128), and unambiguous: '_' appears in neither access levels
// nor bucket names, and a non-empty prefix is represented by a hash.
func GroupName(g Grant) string {
	name := "keyvend_" + string(g.Access) + "_" + g.Bucket
	if g.Prefix != "" {
		sum := sha256.Sum256([]byte(g.Prefix))
		name += "_" + hex.EncodeToString(sum[:8])
	}
	return name
}

// InlinePolicyName is the name of the inline policy on every keyvend group
// (grant mode "group").
const InlinePolicyName = "keyvend-grant"

// UserPolicyName is the name of the inline policy that holds all of a
// user's grants (grant mode "policy").
const UserPolicyName = "keyvend-grants"
