// Package authz decides who may vend which buckets. Its input is a rules
// file; anything no rule allows is denied.
package authz

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keyvend/keyvend/pkg/policy"
)

// Rule allows the principals it names to vend the listed access levels on
// buckets whose names match its patterns. Patterns are globs: '*' matches
// any run of characters, '?' exactly one.
//
// Actions lists what the rule lets its principals do to users with those
// grants; without it a rule allows only create (and every caller may
// describe, rotate and delete the users it requested). MaxTTL caps the
// lifetime of the users it allows; RequireExpiry makes one mandatory.
//
// Channels, when given, restricts the rule to chat callers acting from
// those channels (Slack channel ids, globs): such a rule never matches a
// caller without a channel, such as an HTTP caller.
//
// A bucket pattern that matches every bucket ("*", "?*", …) is refused
// unless AllBuckets says so: a rule that reaches every bucket of the
// account (and the boundary derived from it) must be meant.
type Rule struct {
	Principals    []string        `json:"principals"`
	Channels      []string        `json:"channels,omitempty"`
	Buckets       []string        `json:"buckets"`
	AllBuckets    bool            `json:"all_buckets,omitempty"`
	Access        []policy.Access `json:"access"`
	Actions       []Action        `json:"actions,omitempty"`
	MaxTTL        Duration        `json:"max_ttl,omitempty"`
	RequireExpiry bool            `json:"require_expiry,omitempty"`
	// RotateEvery schedules the rotation of the keys of users holding a
	// grant the rule's buckets and access cover: whole days, from 1 to
	// 1000 (Secrets Manager's AutomaticallyAfterDays). Zero: no schedule.
	RotateEvery Period `json:"rotate_every,omitempty"`
	// Approval, when given, makes what the rule allows wait for other
	// people's approval (approval.go).
	Approval *Approval `json:"approval,omitempty"`
	// MaxUsers caps how many live users one requester may hold under the
	// rule (users all of whose grants it covers): a create beyond it is
	// refused (Limits). Zero: no limit.
	MaxUsers MaxUsers `json:"max_users,omitempty"`
}

// MaxUsers is a rule's max_users: a whole number, 0 for no limit.
type MaxUsers int

// UnmarshalJSON implements json.Unmarshaler: only a non-negative whole
// number is a max_users.
func (m *MaxUsers) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil || bytes.HasPrefix(b, []byte(`"`)) {
		return fmt.Errorf("max_users must be a whole number such as 10 (0 or absent: no limit), not %s", b)
	}
	v, err := strconv.ParseInt(n.String(), 10, 32)
	if err != nil || v < 0 {
		return fmt.Errorf("max_users must be a whole number from 1 (0 or absent: no limit), not %s", n)
	}
	*m = MaxUsers(v)
	return nil
}

// Rotation schedule bounds (Secrets Manager's RotationRules.AutomaticallyAfterDays).
const (
	MinRotateEvery = 24 * time.Hour
	MaxRotateEvery = 1000 * 24 * time.Hour
)

// Period is a rotation period written as a Go duration string ("2160h").
type Period time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (p *Period) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("rotate_every must be a Go duration string such as \"2160h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("rotate_every %q: want a Go duration such as \"2160h\" (90 days)", s)
	}
	*p = Period(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (p Period) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(p).String())
}

// Days is the period in whole days.
func (p Period) Days() int64 { return int64(time.Duration(p) / (24 * time.Hour)) }

// checkRotateEvery says what is wrong with a rotate_every ("" for nothing).
func checkRotateEvery(p Period) string {
	d := time.Duration(p)
	switch {
	case d == 0:
		return ""
	case d < MinRotateEvery || d > MaxRotateEvery:
		return fmt.Sprintf("%s is outside what Secrets Manager schedules: 24h (1 day) to 24000h (1000 days)", d)
	case d%(24*time.Hour) != 0:
		return fmt.Sprintf("%s is not a whole number of days (Secrets Manager rotates after whole days): use a multiple of 24h", d)
	}
	return ""
}

// Action is something a rule can allow.
type Action string

// The actions. Every action on existing users (all but create) also
// allows describe.
const (
	Create      Action = "create"
	Describe    Action = "describe"
	List        Action = "list"
	Rotate      Action = "rotate"
	Update      Action = "update"
	Delete      Action = "delete"
	ForceDelete Action = "force-delete"
)

// Actions lists every action, in a stable order.
var Actions = []Action{Create, Describe, List, Rotate, Update, Delete, ForceDelete}

// Valid reports whether a is a known action.
func (a Action) Valid() bool {
	for _, k := range Actions {
		if a == k {
			return true
		}
	}
	return false
}

// Duration is a time.Duration written as a Go duration string ("720h").
type Duration time.Duration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("max_ttl must be a Go duration string such as \"720h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return fmt.Errorf("max_ttl %q: want a positive Go duration such as \"720h\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// Rules is a parsed, validated rules file. The zero value denies all.
type Rules struct {
	Rules []Rule `json:"rules"`
}

// Load reads and validates the rules file at path. An empty path means no
// rules file: every request is denied.
func Load(path string) (*Rules, error) {
	if path == "" {
		return &Rules{}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("rules file: %w", err)
	}
	defer f.Close()
	r, err := Parse(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("rules file %s: %w", path, err)
	}
	return r, nil
}

// Parse decodes and validates a rules document. Unknown fields, empty
// lists, unknown access levels and bucket patterns that could never match
// a valid bucket name are errors.
func Parse(r io.Reader) (*Rules, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var rules Rules
	if err := dec.Decode(&rules); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	// dec.More reports false before a stray '}' or ']', so ask for the next
	// token: anything but EOF is trailing data.
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("invalid JSON: trailing data after the document")
	}
	var problems []string
	for i, rule := range rules.Rules {
		problems = append(problems, rule.problems(fmt.Sprintf("rules[%d]", i))...)
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return &rules, nil
}

func (r Rule) problems(at string) []string {
	var out []string
	if len(r.Principals) == 0 {
		out = append(out, at+".principals: at least one principal pattern is required")
	}
	for j, p := range r.Principals {
		if strings.TrimSpace(p) == "" {
			out = append(out, fmt.Sprintf("%s.principals[%d]: empty pattern", at, j))
		}
	}
	if r.Channels != nil && len(r.Channels) == 0 {
		out = append(out, at+".channels: give at least one channel pattern, or leave channels out to allow every channel")
	}
	for j, c := range r.Channels {
		if strings.TrimSpace(c) == "" || strings.ContainsAny(c, " \t\r\n") {
			out = append(out, fmt.Sprintf("%s.channels[%d] %q: want a channel id or a glob such as C0123ABCD or C*", at, j, c))
		}
	}
	if len(r.Buckets) == 0 {
		out = append(out, at+".buckets: at least one bucket pattern is required")
	}
	everyBucket := false
	for j, b := range r.Buckets {
		if msg := checkBucketPattern(b); msg != "" {
			out = append(out, fmt.Sprintf("%s.buckets[%d] %q: %s", at, j, b, msg))
		}
		if matchesEveryBucket(b) {
			everyBucket = true
			if !r.AllBuckets {
				out = append(out, fmt.Sprintf("%s.buckets[%d] %q matches every bucket of the account: if that is meant, say so with \"all_buckets\": true", at, j, b))
			}
		}
	}
	if r.AllBuckets && !everyBucket && len(r.Buckets) > 0 {
		out = append(out, at+`.all_buckets is true but no bucket pattern matches every bucket: use "buckets": ["*"]`)
	}
	if len(r.Access) == 0 {
		out = append(out, at+".access: at least one access level is required")
	}
	for j, a := range r.Access {
		if !a.Valid() {
			out = append(out, fmt.Sprintf("%s.access[%d]: unknown access level %q", at, j, a))
		}
	}
	for j, a := range r.Actions {
		if !a.Valid() {
			out = append(out, fmt.Sprintf("%s.actions[%d]: unknown action %q", at, j, a))
		}
	}
	if msg := checkRotateEvery(r.RotateEvery); msg != "" {
		out = append(out, at+".rotate_every: "+msg)
	}
	out = append(out, r.approvalProblems(at)...)
	return out
}

// RotateEvery is the rotation schedule of a user holding grants: the
// shortest rotate_every of the rules whose buckets and access cover one
// of them, whoever asks (a schedule belongs to what a key can do); zero
// when none asks for one.
func (rs *Rules) RotateEvery(grants []policy.Grant) time.Duration {
	var every time.Duration
	for _, g := range grants {
		for _, r := range rs.Rules {
			d := time.Duration(r.RotateEvery)
			if d == 0 || !anyMatch(r.Buckets, g.Bucket) || !hasAccess(r.Access, g.Access) {
				continue
			}
			if every == 0 || d < every {
				every = d
			}
		}
	}
	return every
}

// AskRotation reports whether any rule has a rotate_every.
func (rs *Rules) AskRotation() bool {
	for _, r := range rs.Rules {
		if r.RotateEvery != 0 {
			return true
		}
	}
	return false
}

// matchesEveryBucket reports whether the bucket pattern p matches every
// valid bucket name: only wildcards, at least one '*', and no more '?' than
// the shortest bucket name (3 characters) has characters.
func matchesEveryBucket(p string) bool {
	return p != "" && strings.Trim(p, "*?") == "" && strings.Contains(p, "*") && strings.Count(p, "?") <= 3
}

func checkBucketPattern(p string) string {
	if p == "" {
		return "empty pattern"
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '*' || c == '?') {
			return fmt.Sprintf("invalid character %q: bucket patterns use lowercase letters, digits, '.', '-', '*' and '?'", c)
		}
	}
	return ""
}

func hasAccess(levels []policy.Access, a policy.Access) bool {
	for _, l := range levels {
		if l == a {
			return true
		}
	}
	return false
}

func anyMatch(patterns []string, s string) bool {
	for _, p := range patterns {
		if Match(p, s) {
			return true
		}
	}
	return false
}

// Match reports whether s matches the glob pattern p, where '*' matches any
// run of characters (including '/' and ':') and '?' any one character. It
// runs in O(len(p)*len(s)) time at worst, never exponential.
func Match(p, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*': // before the literal case: a '*' in s is not special
			star, mark = pi, si
			pi++
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
