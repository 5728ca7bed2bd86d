package slashcmd_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/provision"
	"github.com/keyvend/keyvend/pkg/slashcmd"
)

// FuzzParse: whatever the text, Parse answers a command or a usage error
// and never panics; a parsed provision command always passes or fails
// provision's validation cleanly (a KindInvalid error naming fields); a
// command whose values are valid reads back from its Text unchanged; Text
// never carries unescaped Slack markup. The seed corpus is in
// testdata/fuzz/FuzzParse; `make test` fuzzes for a few seconds.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, text string) {
		c, err := slashcmd.Parse(text)
		if err != nil {
			var ue *slashcmd.UsageError
			if !errors.As(err, &ue) || ue.Reason == "" {
				t.Fatalf("Parse(%q): error %T %v, want a *UsageError with a reason", text, err, err)
			}
			return
		}
		valid := true
		switch c.Op {
		case slashcmd.OpHelp:
		case slashcmd.OpList, slashcmd.OpPending:
		case slashcmd.OpApprove, slashcmd.OpDeny:
			if !approval.ValidID(c.ID) || c.Op == slashcmd.OpDeny && strings.TrimSpace(c.Reason) == "" {
				t.Fatalf("Parse(%q) = %+v: no valid id, or a denial without a reason", text, c)
			}
		case slashcmd.OpRotate, slashcmd.OpStatus, slashcmd.OpDelete:
			if c.User == "" {
				t.Fatalf("Parse(%q) = %+v: no user", text, c)
			}
		case slashcmd.OpProvision:
			if c.User == "" || len(c.Grants) == 0 {
				t.Fatalf("Parse(%q) = %+v: no user or no grant", text, c)
			}
			req := c.CreateRequest()
			verr := req.Validate()
			if verr != nil {
				var pe *provision.Error
				if !errors.As(verr, &pe) || pe.Kind != provision.KindInvalid || len(pe.Fields) == 0 {
					t.Fatalf("Parse(%q) → Validate: %T %v, want a KindInvalid error with fields", text, verr, verr)
				}
				valid = false
			}
		default:
			t.Fatalf("Parse(%q) = unknown op %q", text, c.Op)
		}
		out := c.Text()
		if strings.ContainsAny(strings.NewReplacer("&amp;", "", "&lt;", "", "&gt;", "").Replace(out), "<>&") {
			t.Fatalf("Text of %+v = %q: unescaped markup", c, out)
		}
		if !valid || len(out) > slashcmd.MaxTextLen {
			return
		}
		back, err := slashcmd.Parse(out)
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("Parse(%q) = %+v; its Text %q parses as %+v, %v", text, c, out, back, err)
		}
	})
}
