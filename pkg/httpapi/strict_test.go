package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/caller"
)

// TestBodyKeysAreExact: every JSON body goes through the one decoder, so
// rotate's and grants' bodies refuse duplicate keys and keys that match a
// field only case-insensitively, as create's do (badCases), before any AWS
// call. The user need not exist: nothing reaches the service.
func TestBodyKeysAreExact(t *testing.T) {
	e := newAPI(t, caller.Static{ARN: testCaller})
	user := awstest.Name("strict")
	cases := []struct {
		name, method, path, body, field string
	}{
		{"rotate Wait", http.MethodPost, "/v1/users/" + user + "/rotate", `{"Wait":true}`, "Wait"},
		{"rotate wait twice", http.MethodPost, "/v1/users/" + user + "/rotate", `{"wait":false,"wait":true}`, "wait"},
		{"rotate WAIT", http.MethodPost, "/v1/users/" + user + "/rotate", `{"WAIT":true}`, "WAIT"},
		{"grants Grants", http.MethodPut, "/v1/users/" + user + "/grants", `{"Grants":[{"bucket":"site.example.com","access":"read-only"}]}`, "Grants"},
		{"grants twice", http.MethodPut, "/v1/users/" + user + "/grants", `{"grants":[],"grants":[{"bucket":"site.example.com","access":"read-only"}]}`, "grants"},
		{"grant key twice", http.MethodPut, "/v1/users/" + user + "/grants", `{"grants":[{"bucket":"site.example.com","bucket":"other.example.com","access":"read-only"}]}`, "grants[0].bucket"},
		{"grant key PREFIX", http.MethodPut, "/v1/users/" + user + "/grants", `{"grants":[{"bucket":"site.example.com","access":"read-only","PREFIX":"a/"}]}`, "grants[0].PREFIX"},
		{"grant key with a long s", http.MethodPut, "/v1/users/" + user + "/grants", `{"grants":[{"bucket":"site.example.com","acce` + "\u017f\u017f" + `":"read-only"}]}`, "grants[0].acce\u017f\u017f"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := send(e.h, c.method, c.path, jsonCT, strings.NewReader(c.body))
			p := checkProblem(t, w, http.StatusBadRequest, "invalid-json")
			if !slices.Contains(p.fields(), c.field) {
				t.Errorf("errors %+v do not name %s", p.Errors, c.field)
			}
		})
	}
	assertNoAWSCalls(t, e)
}
