package authz_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keyvend/keyvend/pkg/authz"
	"github.com/keyvend/keyvend/pkg/policy"
)

// channelRules: a Slack team may vend read-only anywhere it talks to
// keyvend, read-write only from the deploys channels, and full access on
// assets only from one channel with a 24h cap. An IAM rule without
// channels sits next to them.
const channelRules = `{"rules":[
 {"principals":["slack:T1/*"],"buckets":["*.example.com"],"access":["read-only"]},
 {"principals":["slack:T1/*"],"channels":["C0DEPLOYS","C0DEPLOY?-*"],"buckets":["*.example.com"],"access":["read-write"],"actions":["create","rotate"]},
 {"principals":["slack:T1/U0OPS"],"channels":["C0OPS"],"buckets":["assets.example.com"],"access":["full"],"max_ttl":"24h"},
 {"principals":["slack:T1/U0OPS"],"buckets":["assets.example.com"],"access":["full"],"max_ttl":"720h","channels":["C0OPSLOG"]},
 {"principals":["arn:aws:iam::1:user/*"],"buckets":["*.example.com"],"access":["read-write"]}
]}`

func TestDecideInChannels(t *testing.T) {
	rs := mustParse(t, channelRules)
	ro := policy.Grant{Bucket: "site.example.com", Access: policy.ReadOnly}
	rw := policy.Grant{Bucket: "site.example.com", Access: policy.ReadWrite}
	full := policy.Grant{Bucket: "assets.example.com", Access: policy.Full}
	alice := []string{"slack:T1/U0ALICE"}
	ops := []string{"slack:T1/U0OPS"}
	iamUser := []string{"arn:aws:iam::1:user/bob"}
	cases := []struct {
		name    string
		names   []string
		channel string
		action  authz.Action
		grants  []policy.Grant
		allow   bool
	}{
		{"rule without channels: any channel", alice, "C0RANDOM", authz.Create, []policy.Grant{ro}, true},
		{"rule without channels: no channel (HTTP)", []string{"slack:T1/U0ALICE"}, "", authz.Create, []policy.Grant{ro}, true},
		{"channel rule: listed channel", alice, "C0DEPLOYS", authz.Create, []policy.Grant{rw}, true},
		{"channel rule: glob channel", alice, "C0DEPLOY2-prod", authz.Create, []policy.Grant{rw}, true},
		{"channel rule: other channel", alice, "C0RANDOM", authz.Create, []policy.Grant{rw}, false},
		{"channel rule: glob needs its shape", alice, "C0DEPLOY22", authz.Create, []policy.Grant{rw}, false},
		{"channel rule never matches a caller without a channel", alice, "", authz.Create, []policy.Grant{rw}, false},
		{"channel rule: its actions only", alice, "C0DEPLOYS", authz.Delete, []policy.Grant{rw}, false},
		{"channel rule: rotate allowed", alice, "C0DEPLOYS", authz.Rotate, []policy.Grant{rw}, true},
		{"every grant needs a rule in the channel", alice, "C0RANDOM", authz.Create, []policy.Grant{ro, rw}, false},
		{"principal must still match", []string{"slack:T2/U0ALICE"}, "C0DEPLOYS", authz.Create, []policy.Grant{rw}, false},
		{"ops: full in the ops channel", ops, "C0OPS", authz.Create, []policy.Grant{full}, true},
		{"ops: full not elsewhere", ops, "C0DEPLOYS", authz.Create, []policy.Grant{full}, false},
		{"IAM caller unaffected", iamUser, "", authz.Create, []policy.Grant{rw}, true},
		{"no grants: rule with the action in the channel", alice, "C0DEPLOYS", authz.Rotate, nil, true},
		{"no grants: rule with the action, other channel", alice, "C0RANDOM", authz.Rotate, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := rs.DecideIn(c.names, c.channel, c.action, c.grants)
			if (err == nil) != c.allow {
				t.Fatalf("DecideIn = %v, want allow=%v", err, c.allow)
			}
			var d *authz.ActionDenial
			if err != nil {
				if !errors.As(err, &d) {
					t.Fatalf("denial is %T, want *authz.ActionDenial", err)
				}
				if c.channel != "" && !strings.Contains(err.Error(), "in channel "+c.channel) {
					t.Errorf("denial %q does not name the channel", err)
				}
			}
			// Decide is DecideIn without a channel.
			if c.channel == "" {
				if err2 := rs.Decide(c.names, c.action, c.grants); (err2 == nil) != (err == nil) {
					t.Errorf("Decide = %v, DecideIn(\"\") = %v", err2, err)
				}
			}
		})
	}
}

func TestExpiryInChannels(t *testing.T) {
	rs := mustParse(t, channelRules)
	full := []policy.Grant{{Bucket: "assets.example.com", Access: policy.Full}}
	ops := []string{"slack:T1/U0OPS"}
	if got, want := rs.ExpiryIn(ops, "C0OPS", full), (authz.ExpiryLimit{MaxTTL: 24 * time.Hour}); got != want {
		t.Errorf("ops channel: %+v, want %+v", got, want)
	}
	if got, want := rs.ExpiryIn(ops, "C0OPSLOG", full), (authz.ExpiryLimit{MaxTTL: 720 * time.Hour}); got != want {
		t.Errorf("ops log channel: %+v, want %+v", got, want)
	}
	// No rule covers it outside those channels: the strict answer.
	if got := rs.ExpiryIn(ops, "C0OTHER", full); !got.Required || got.MaxTTL != time.Nanosecond {
		t.Errorf("other channel: %+v, want the strict limit", got)
	}
	if got := rs.Expiry(ops, full); got != rs.ExpiryIn(ops, "", full) {
		t.Errorf("Expiry and ExpiryIn(\"\") differ: %+v", got)
	}
}

func TestParseChannels(t *testing.T) {
	for name, doc := range map[string]string{
		"empty list":         `{"rules":[{"principals":["slack:T1/*"],"channels":[],"buckets":["b*"],"access":["full"]}]}`,
		"empty pattern":      `{"rules":[{"principals":["slack:T1/*"],"channels":["C1",""],"buckets":["b*"],"access":["full"]}]}`,
		"pattern with space": `{"rules":[{"principals":["slack:T1/*"],"channels":["C1 C2"],"buckets":["b*"],"access":["full"]}]}`,
		"not a list":         `{"rules":[{"principals":["slack:T1/*"],"channels":"C1","buckets":["b*"],"access":["full"]}]}`,
	} {
		if _, err := authz.Parse(strings.NewReader(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if name != "not a list" && !strings.Contains(err.Error(), "rules[0].channels") {
			t.Errorf("%s: error %q does not name rules[0].channels", name, err)
		}
	}
	rs := mustParse(t, channelRules)
	if got := rs.Rules[1].Channels; len(got) != 2 || got[0] != "C0DEPLOYS" {
		t.Errorf("channels parsed as %v", got)
	}
}

// TestDemoRulesSlack: the demo rules let the demo Slack team vend and
// rotate read-write, and list, from #deploys only.
func TestDemoRulesSlack(t *testing.T) {
	rs, err := authz.Load(filepath.Join("..", "..", "rules", "demo.json"))
	if err != nil {
		t.Fatal(err)
	}
	rw := []policy.Grant{{Bucket: "site.example.com", Access: policy.ReadWrite}}
	who := []string{"slack:T0KEYVEND/U0ALICE"}
	if err := rs.DecideIn(who, "C0DEPLOYS", authz.Create, rw); err != nil {
		t.Errorf("from #deploys: %v", err)
	}
	if err := rs.DecideIn(who, "C0RANDOM", authz.Create, rw); err == nil {
		t.Error("allowed outside #deploys")
	}
	if err := rs.DecideIn(who, "C0DEPLOYS", authz.Create, []policy.Grant{{Bucket: "assets.example.com", Access: policy.Full}}); err == nil {
		t.Error("full access allowed to Slack")
	}
	if err := rs.DecideIn([]string{"slack:T0OTHER/U0ALICE"}, "C0DEPLOYS", authz.Create, rw); err == nil {
		t.Error("another team allowed")
	}
}
