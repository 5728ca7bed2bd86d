package httpapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestCheckKeysShapes covers the shapes keyvend's request types do not
// have yet, so a future body gets the same strictness: embedded structs,
// pointers, maps, interfaces and types that decode themselves are checked
// for duplicate keys at any depth, and struct keys must be exact.
func TestCheckKeysShapes(t *testing.T) {
	type Inner struct {
		Name string `json:"name"`
	}
	type Embedded struct {
		Zone string `json:"zone"`
	}
	type body struct {
		Embedded
		Ptr      *Inner            `json:"ptr"`
		Map      map[string]Inner  `json:"map"`
		Any      any               `json:"any"`
		Raw      json.RawMessage   `json:"raw"`
		When     time.Time         `json:"when"`
		List     []*Inner          `json:"list"`
		Fixed    [2]Inner          `json:"fixed"`
		Untagged string            // its Go name is its JSON name
		Skipped  string            `json:"-"`
		Opts     map[string]string `json:"opts,omitempty"`
		private  string
	}
	_ = body{}.private
	typ := reflect.TypeFor[*body]()
	for _, ok := range []string{
		`{}`, `null`,
		`{"zone":"a","ptr":{"name":"x"},"map":{"k":{"name":"x"},"K":{"name":"y"}},"any":{"a":{"b":[{"c":1}]}},"raw":{"x":[1,{"y":2}]},"when":"2030-01-01T00:00:00Z","list":[{"name":"a"},null],"fixed":[{"name":"a"}],"Untagged":"u","opts":{"a":"b","A":"c"}}`,
		// Not well-formed, or the wrong kind of value: json.Decoder's to refuse.
		`{"zone":`, `{"ptr":[{"name":1,"name":2}]}`, `[1,2]`, `"x"`,
	} {
		if p := checkKeys([]byte(ok), typ); p != nil {
			t.Errorf("checkKeys(%s) = %+v, want nil", ok, p)
		}
	}
	for _, c := range []struct{ body, field, detail string }{
		{`{"zone":"a","zone":"b"}`, "zone", "duplicate key"},
		{`{"Zone":"a"}`, "Zone", `did you mean "zone"`},
		{`{"ptr":{"name":"a","Name":"b"}}`, "ptr.Name", `did you mean "name"`},
		{`{"map":{"k":{"name":"x"},"k":{"name":"y"}}}`, "map.k", "duplicate key"},
		{`{"map":{"k":{"NAME":"x"}}}`, "map.k.NAME", `did you mean "name"`},
		{`{"any":{"a":[{"b":1,"b":2}]}}`, "any.a[0].b", "duplicate key"},
		{`{"raw":{"x":{"y":1,"y":1}}}`, "raw.x.y", "duplicate key"},
		{`{"list":[{"name":"a"},{"name":"a","name":"b"}]}`, "list[1].name", "duplicate key"},
		{`{"fixed":[{"nam` + "\u212a" + `":"a"}]}`, "nam\u212a", "unknown field"}, // not a fold of any field: named as json.Decoder names it
		{`{"untagged":"u"}`, "untagged", `did you mean "Untagged"`},
		{`{"Skipped":"s"}`, "Skipped", "unknown field"},
		{`{"private":"p"}`, "private", "unknown field"},
		{`{"opts":{"a":"b","a":"c"}}`, "opts.a", "duplicate key"},
		// The first bad key is reported; the rest of the body is still read.
		{`{"ZONE":"a","zone":"b","zone":"c"}`, "ZONE", "did you mean"},
	} {
		p := checkKeys([]byte(c.body), typ)
		if p == nil || p.Status != 400 || len(p.Errors) != 1 || p.Errors[0].Field != c.field || !strings.Contains(p.Errors[0].Detail, c.detail) {
			t.Errorf("checkKeys(%s) = %+v, want a 400 naming %s (%s)", c.body, p, c.field, c.detail)
		}
	}
	// A duplicate in a body that is not well-formed is json.Decoder's to
	// report (as a syntax error), not checkKeys'.
	if p := checkKeys([]byte(`{"zone":"a","zone":"b"`), typ); p != nil {
		t.Errorf("truncated body: %+v, want nil", p)
	}
}
