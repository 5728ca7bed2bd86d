package httpapi

import (
	"errors"
	"net/http"
	"slices"

	"github.com/keyvend/keyvend/pkg/caller"
)

// Route is one endpoint the handler serves. The table below is the only
// list of them: the mux, the 405 answers' Allow, Routes (and through it
// the CDK app's API Gateway routes and the OpenAPI test) all read it.
type Route struct {
	Method string // GET, POST, PUT or DELETE
	Path   string // a Go 1.22 ServeMux path pattern, e.g. /v1/users/{name}

	query  []string                            // the query parameters it takes (strictQuery)
	handle func(*api, *call) (response, error) // the endpoint, in the file of its path
}

// String is r's ServeMux pattern, which is also its API Gateway route key:
// "GET /v1/users/{name}".
func (r Route) String() string { return r.Method + " " + r.Path }

// routes are the endpoints in the order of the OpenAPI document.
var routes = []Route{
	{Method: http.MethodPost, Path: "/v1/users", handle: (*api).createUser},
	{Method: http.MethodGet, Path: "/v1/users", handle: (*api).listUsers, query: []string{"bucket", "requester", "expiring_before", "limit", "next"}},
	{Method: http.MethodGet, Path: "/v1/users/{name}", handle: (*api).describeUser},
	{Method: http.MethodDelete, Path: "/v1/users/{name}", handle: (*api).deleteUser, query: []string{"force"}},
	{Method: http.MethodPost, Path: "/v1/users/{name}/rotate", handle: (*api).rotateUser},
	{Method: http.MethodPut, Path: "/v1/users/{name}/grants", handle: (*api).updateGrants},
	{Method: http.MethodGet, Path: "/v1/users/{name}/history", handle: (*api).userHistory, query: []string{"limit", "next"}},
	{Method: http.MethodGet, Path: "/v1/requests", handle: (*api).listRequests, query: []string{"status"}},
	{Method: http.MethodGet, Path: "/v1/requests/{id}", handle: (*api).getRequest},
	{Method: http.MethodPost, Path: "/v1/requests/{id}/approve", handle: (*api).approveRequest},
	{Method: http.MethodPost, Path: "/v1/requests/{id}/deny", handle: (*api).denyRequest},
	{Method: http.MethodGet, Path: "/v1/openapi.json", handle: (*api).openAPI},
}

// Routes lists the endpoints the handler serves, in the order of the
// OpenAPI document.
func Routes() []Route { return slices.Clone(routes) }

// mutates reports whether r changes something: such a request may carry an
// Idempotency-Key.
func (r Route) mutates() bool {
	return r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodDelete
}

// call is a request as an endpoint sees it: the caller withCaller
// resolved and the request id are at hand.
type call struct {
	*http.Request
	who caller.Principal
	id  string              // RequestID
	w   http.ResponseWriter // for decode's body limit only: an endpoint answers by returning
}

// decode reads the JSON body into v (decodeJSON); a refused body is a
// *Problem.
func (c *call) decode(v any) error {
	if p := decodeJSON(c.w, c.Request, v); p != nil {
		return p
	}
	return nil
}

// response is an endpoint's answer: status, header, and body — nil for
// none, []byte as is (header names its Content-Type), anything else as
// application/json, uncached (writeJSON).
type response struct {
	status int
	header http.Header
	body   any
}

// ok is a 200 with v as JSON.
func ok(v any) response { return response{status: http.StatusOK, body: v} }

// serve runs an endpoint and writes its answer, or its error as a problem:
// a *Problem as it is, any other error as ProblemFor maps it.
func (a *api) serve(handle func(*api, *call) (response, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, _ := caller.FromContext(r.Context())
		res, err := handle(a, &call{Request: r, who: who, id: RequestID(r.Context()), w: w})
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) {
				p = ProblemFor(r.Context(), a.log, err)
			}
			writeProblem(w, r, p)
			return
		}
		h := w.Header()
		for name, v := range res.header {
			h[name] = v
		}
		switch body := res.body.(type) {
		case nil:
			w.WriteHeader(res.status)
		case []byte:
			w.WriteHeader(res.status)
			_, _ = w.Write(body)
		default:
			writeJSON(w, res.status, "application/json", body)
		}
	}
}
