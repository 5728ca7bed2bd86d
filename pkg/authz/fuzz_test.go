package authz_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/policy"
)

// globRef is the obvious dynamic-programming glob matcher over bytes:
// m[i][j] says whether p[i:] matches s[j:]. Match must agree with it.
func globRef(p, s string) bool {
	m := make([][]bool, len(p)+1)
	for i := range m {
		m[i] = make([]bool, len(s)+1)
	}
	m[len(p)][len(s)] = true
	for i := len(p) - 1; i >= 0; i-- {
		for j := len(s); j >= 0; j-- {
			switch {
			case p[i] == '*':
				m[i][j] = m[i+1][j] || (j < len(s) && m[i][j+1])
			case j < len(s) && (p[i] == '?' || p[i] == s[j]):
				m[i][j] = m[i+1][j+1]
			}
		}
	}
	return m[0][0]
}

// FuzzMatch: authz.Match agrees with globRef on any pattern and string,
// a pattern without wildcards matches only itself, and '*' matches all.
// Seeds: testdata/fuzz/FuzzMatch.
func FuzzMatch(f *testing.F) {
	f.Add("*.example.com", "site.example.com")
	f.Add("*.example.com", "site.example.com.evil")
	f.Add("a*b*c", "aXXbYYc")
	f.Add("arn:aws:iam::123456789012:user/*", "arn:aws:iam::123456789012:user/alice")
	f.Add("??", "é")
	f.Add(strings.Repeat("*a", 20)+"b", strings.Repeat("a", 60))
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 256 || len(s) > 256 {
			return // the reference is quadratic in memory
		}
		got := authz.Match(p, s)
		if want := globRef(p, s); got != want {
			t.Fatalf("Match(%q, %q) = %v, want %v", p, s, got, want)
		}
		if !strings.ContainsAny(p, "*?") && got != (p == s) {
			t.Fatalf("Match(%q, %q) = %v for a pattern without wildcards", p, s, got)
		}
		if !authz.Match("*", s) || !authz.Match(s, s) && !strings.ContainsAny(s, "*?") {
			t.Fatalf("'*' or %q itself does not match %q", s, s)
		}
	})
}

// FuzzDecide parses an arbitrary rules document and asks it about an
// arbitrary caller, action and grant. Parse must never panic, and whatever
// it accepts decides exactly as the rules read: allowed if and only if
// some rule names the caller, the bucket, the access level and the action
// (a rule without actions allows create; list implies describe). An empty
// caller is always denied. Seeds: testdata/fuzz/FuzzDecide.
func FuzzDecide(f *testing.F) {
	f.Add(`{"rules":[{"principals":["arn:aws:iam::1:user/*"],"buckets":["*.example.com"],"access":["read-write"]}]}`,
		"arn:aws:iam::1:user/alice", "", "create", "site.example.com", "read-write")
	f.Add(`{"rules":[{"principals":["jwt-group:ops"],"buckets":["*"],"all_buckets":true,"access":["full"],"actions":["list","delete"],"max_ttl":"720h","require_expiry":true}]}`,
		"jwt:bob", "ops", "describe", "b.example.com", "full")
	f.Add(`{"rules":[{"principals":["*"],"buckets":["a?c"],"access":["read-only"],"actions":["force-delete"]}]}`,
		"x", "", "delete", "abc", "read-only")
	f.Add(`{"rules":[]}`, "x", "", "create", "abc", "read-only")
	f.Add(`{"rules":[{"principals":[""],"buckets":["A"],"access":["root"]}]} trailing`, "", "", "create", "abc", "full")
	f.Fuzz(func(t *testing.T, doc, principal, group, action, bucket, access string) {
		rules, err := authz.Parse(strings.NewReader(doc))
		if err != nil {
			return
		}
		var names []string
		if principal != "" {
			names = append(names, principal)
			if group != "" {
				names = append(names, "jwt-group:"+group)
			}
		}
		g := policy.Grant{Bucket: bucket, Access: policy.Access(access)}
		a := authz.Action(action)
		got := rules.Decide(names, a, []policy.Grant{g}) == nil
		want := false
		for _, r := range rules.Rules {
			if allowsAction(r, a) && anyGlob(r.Buckets, bucket) && hasLevel(r.Access, g.Access) && anyName(r.Principals, names) {
				want = true
			}
		}
		if got != want {
			t.Fatalf("Decide(%q, %s, %+v) allowed=%v, the rules say %v\nrules: %s", names, a, g, got, want, doc)
		}
		if got {
			lim := rules.Expiry(names, []policy.Grant{g})
			if lim.MaxTTL < 0 || (lim.MaxTTL > 0 && lim.MaxTTL < time.Nanosecond) {
				t.Fatalf("Expiry = %+v", lim)
			}
		}
	})
}

func allowsAction(r authz.Rule, a authz.Action) bool {
	if len(r.Actions) == 0 {
		return a == authz.Create
	}
	for _, x := range r.Actions {
		if x == a || (x == authz.List && a == authz.Describe) {
			return true
		}
	}
	return false
}

func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if globRef(p, s) {
			return true
		}
	}
	return false
}

func anyName(patterns, names []string) bool {
	for _, n := range names {
		if anyGlob(patterns, n) {
			return true
		}
	}
	return false
}

func hasLevel(levels []policy.Access, a policy.Access) bool {
	for _, l := range levels {
		if l == a {
			return true
		}
	}
	return false
}
