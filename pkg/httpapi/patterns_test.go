package httpapi_test

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/httpapi"
	"github.com/keyvend/keyvend/pkg/policy"
	"github.com/keyvend/keyvend/pkg/provision"
)

// TestOpenAPIPatterns: the document's schemas for the fields the server
// validates (user name, bucket, prefix, reason, expires_in) agree with the
// server's validators on sample inputs, so a client that validates with
// the document neither refuses what keyvend accepts nor passes what it
// refuses. Where a schema cannot say a rule (a duration's bounds), the
// samples that only the server refuses are listed as such.
func TestOpenAPIPatterns(t *testing.T) {
	doc := loadDoc(t)
	okGrant := policy.Grant{Bucket: "site.example.com", Access: policy.ReadOnly}
	reasonField := func(r provision.CreateRequest) string {
		var pe *provision.Error
		if err := r.Validate(); errors.As(err, &pe) {
			for _, f := range pe.Fields {
				if f.Field == "reason" || f.Field == "expires_in" {
					return f.Detail
				}
			}
		}
		return ""
	}
	ids := httpapi.New(nil, caller.Static{ARN: testCaller}, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	var odd []string // single characters of several kinds
	for c := rune(0); c < 0x80; c++ {
		odd = append(odd, string(c))
	}
	odd = append(odd, "é", "ß", "中", "٣", "²", "Ⅻ", "\u00a0", "\u2028", "\u3000", "\u0085", "\u200b", "😀", "\ufffd", "ǅ", "\u0301")
	around := func(f func(string) string) []string {
		var out []string
		for _, c := range odd {
			out = append(out, c, f(c))
		}
		return out
	}

	for _, x := range []struct {
		name    string
		schema  string
		server  func(string) string // why the server refuses v, or ""
		samples []string
		looser  map[string]bool // the schema passes, only the server refuses
	}{
		{
			name: "user", schema: "#/components/schemas/UserName", server: provision.CheckUserName,
			samples: append(around(func(c string) string { return "a" + c + "b" }), "", ".", "..", "...", ".a",
				strings.Repeat("u", 64), strings.Repeat("u", 65)),
		},
		{
			name: "bucket", schema: "#/components/schemas/BucketName", server: policy.CheckBucketName,
			samples: append(around(func(c string) string { return "ab" + c + "cd" }), "", "ab", "abc", "a.b", "a..b", "a.-.b", "-ab", "ab-", ".ab", "ab.",
				"1.2.3.4", "192.168.0.1", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "xn--ab", "axn--b", "sthree-x", "amzn-s3-demo-x",
				"ab-s3alias", "ab--ol-s3", "ab.mrap", "ab--x-s3", "ab--table-s3", "ab-s3aliasx", strings.Repeat("b", 63), strings.Repeat("b", 64)),
		},
		{
			name: "prefix", schema: "#/components/schemas/Grant/properties/prefix",
			server: func(p string) string {
				g := okGrant
				g.Prefix = p
				if fe := g.Validate(); len(fe) > 0 {
					return fe[0].Detail
				}
				return ""
			},
			samples: append(around(func(c string) string { return "a" + c + "/" }), "", "/", "/a", "a/", "img/2024/", ".", "..", "./a", "a/.", "a/./b", "a/../b",
				"a..b", ".a", "a.", "a/.b", "a./b", "...", strings.Repeat("p", 512), strings.Repeat("p", 513)),
		},
		{
			name: "reason", schema: "#/components/schemas/CreateRequest/properties/reason",
			server: func(r string) string {
				return reasonField(provision.CreateRequest{User: "u", Grants: []policy.Grant{okGrant}, Reason: r})
			},
			samples: append(around(func(c string) string { return "x" + c + "y" }), "", " ", "  ", "\u3000", " a ", "blog deploys", "CI: deploy/site=1+2@x-y_z.",
				strings.Repeat("é", 256), strings.Repeat("é", 257), strings.Repeat(" ", 255)+"a"),
		},
		{
			name: "X-Request-Id", schema: "#/components/parameters/RequestId/schema",
			server: func(id string) string {
				r := httptest.NewRequest(http.MethodGet, "/v1/openapi.json", nil)
				r.Header.Set("X-Request-Id", id)
				w := httptest.NewRecorder()
				ids.ServeHTTP(w, r)
				if w.Header().Get("X-Request-Id") != id {
					return "not kept"
				}
				return ""
			},
			samples: append(around(func(c string) string { return "a" + c + "b" }), malformedRequestIDs...),
		},
		{
			name: "expires_in", schema: "#/components/schemas/CreateRequest/properties/expires_in",
			server: func(d string) string {
				return reasonField(provision.CreateRequest{User: "u", Grants: []policy.Grant{okGrant}, Reason: "r", ExpiresIn: d})
			},
			samples: []string{"720h", "90m", "1h30m", "1.5h", ".5h", "1.h", "+1h", "-1h", "1", "0", "0h", "h", "1d", "1H", "1µs", "1μs", "1us", "1ns", "1ms",
				"87600h", "87601h", "1h 30m", " 1h", "99999999999999999999h"},
			looser: map[string]bool{"0h": true, "87601h": true, "99999999999999999999h": true},
		},
	} {
		t.Run(x.name, func(t *testing.T) {
			schema := map[string]any{"$ref": x.schema}
			if doc.pointer(x.schema) == nil {
				t.Fatalf("no schema %s", x.schema)
			}
			for _, v := range x.samples {
				specOK := len(doc.validate(schema, v)) == 0
				why := x.server(v)
				switch {
				case why == "" && !specOK:
					t.Errorf("%q: the server accepts it, the document refuses it: %v", v, doc.validate(schema, v))
				case why != "" && specOK && !x.looser[v]:
					t.Errorf("%q: the document accepts it, the server refuses it (%s)", v, why)
				case why == "" && x.looser[v]:
					t.Errorf("%q is listed as refused by the server only, and the server accepts it", v)
				}
			}
		})
	}
}
