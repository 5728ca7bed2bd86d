// Package httpapi is keyvend's HTTP interface: one http.Handler, routed
// with Go 1.22 patterns, that the local server serves directly and the
// Lambda function serves through the API Gateway adapter (lambda.go).
// Errors are application/problem+json with the request id.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"github.com/keyvend/keyvend/pkg/approval"
	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/provision"
)

// Service is what the API needs of the provisioning service.
type Service interface {
	Create(ctx context.Context, in provision.CreateInput) (*provision.CreateResult, error)
	Describe(ctx context.Context, p caller.Principal, name string) (*provision.Description, error)
	Rotate(ctx context.Context, in provision.RotateInput) (*provision.RotateResult, error)
	UpdateGrants(ctx context.Context, in provision.UpdateGrantsInput) (*provision.Description, error)
	Delete(ctx context.Context, in provision.DeleteInput) error
	List(ctx context.Context, in provision.ListInput) (*provision.ListResult, error)
	History(ctx context.Context, in provision.HistoryInput) (*provision.HistoryResult, error)
	// Approvals (pkg/provision/approval.go).
	ListRequests(ctx context.Context, in provision.ListRequestsInput) (*provision.RequestList, error)
	GetRequest(ctx context.Context, p caller.Principal, id string) (*approval.Request, error)
	Decide(ctx context.Context, in provision.DecideInput) (*approval.Request, error)
}

type api struct {
	svc     Service
	who     caller.Resolver
	log     *slog.Logger
	origins map[string]bool
	idem    *idempotency.Store // nil: requests with an Idempotency-Key are refused
}

// Option configures the handler.
type Option func(*api)

// WithCORSOrigins allows browsers on these origins (exact matches, e.g.
// https://portal.example.com) to call the API. None by default.
func WithCORSOrigins(origins ...string) Option {
	return func(a *api) {
		for _, o := range origins {
			if o = strings.TrimSpace(o); o != "" {
				a.origins[o] = true
			}
		}
	}
}

// New returns keyvend's HTTP handler. who establishes the caller of each
// request; a request without one is answered 401 before anything else.
func New(svc Service, who caller.Resolver, log *slog.Logger, opts ...Option) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	a := &api{svc: svc, who: who, log: log, origins: map[string]bool{}}
	for _, o := range opts {
		o(a)
	}
	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, route := range routes {
		h := a.serve(route.handle)
		if route.mutates() {
			h = a.idempotent(h)
		}
		mux.HandleFunc(route.String(), strictQuery(route.query, h))
		allowed[route.Path] = append(allowed[route.Path], route.Method)
	}
	for path, methods := range allowed {
		mux.HandleFunc(path, methodNotAllowed(strings.Join(methods, ", ")))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, newProblem(http.StatusNotFound, "not-found", "Not found", "no such endpoint"))
	})
	return a.withRequestID(a.withAccessLog(a.withRecover(a.withCORS(a.withCaller(canonicalPath(mux))))))
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeProblem(w, r, newProblem(http.StatusMethodNotAllowed, "method-not-allowed", "Method not allowed", "use "+allow))
	}
}

type requestIDKey struct{}

// RequestID returns the id of the request ctx belongs to.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// NewRequestID is keyvend's own id for request r: API Gateway's in Lambda,
// a random one locally. The Slack endpoint names its requests with it; the
// API prefers a client's well-formed X-Request-Id (requestID).
func NewRequestID(r *http.Request) string {
	if id := apiGatewayRequestID(r); id != "" {
		return id
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// apiGatewayRequestID is API Gateway's id of r, "" outside Lambda.
func apiGatewayRequestID(r *http.Request) string {
	if rc, ok := core.GetAPIGatewayV2ContextFromContext(r.Context()); ok {
		return rc.RequestID
	}
	return ""
}

// MaxRequestIDLen bounds a client's X-Request-Id.
const MaxRequestIDLen = 128

// clientRequestID is r's X-Request-Id if the client sent exactly one and it
// is 1 to MaxRequestIDLen of A-Za-z0-9._- (safe in a header, a log line and
// a tag value); otherwise "".
func clientRequestID(r *http.Request) string {
	ids := r.Header.Values("X-Request-Id")
	if len(ids) != 1 || len(ids[0]) == 0 || len(ids[0]) > MaxRequestIDLen {
		return ""
	}
	for i := 0; i < len(ids[0]); i++ {
		c := ids[0][i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return ""
		}
	}
	return ids[0]
}

// withRequestID assigns the request id: the client's own X-Request-Id
// when it is well-formed (clientRequestID), so a client can correlate
// its calls, otherwise keyvend's (NewRequestID). The access log records
// API Gateway's id beside it.
func (a *api) withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := clientRequestID(r)
		if id == "" {
			id = NewRequestID(r)
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id)))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// withAccessLog logs one JSON line per request: never a body. principal is
// who rules saw (an assumed-role session as its role); caller_arn is the
// identity as the authorizer reported it, session name included;
// auth_error, on a 401, why the request's identity was not accepted (the
// answer itself says no more than that).
func (a *api) withAccessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		who := &callerNote{}
		r = r.WithContext(context.WithValue(r.Context(), callerNoteKey{}, who))
		next.ServeHTTP(sw, r)
		attrs := []slog.Attr{
			slog.String("request_id", RequestID(r.Context())),
		}
		if gw := apiGatewayRequestID(r); gw != "" {
			attrs = append(attrs, slog.String("apigw_request_id", gw))
		}
		attrs = append(attrs,
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", sw.status),
			slog.String("principal", who.p.ID),
			slog.String("caller_arn", who.p.Raw),
		)
		if who.err != nil {
			attrs = append(attrs, slog.String("auth_error", who.err.Error()))
		}
		attrs = append(attrs, slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000))
		a.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// callerNote is what withCaller found, for the access log: the principal,
// or why there is none.
type callerNote struct {
	p   caller.Principal
	err error
}

// callerNoteKey carries the request's *callerNote.
type callerNoteKey struct{}

func (a *api) withRecover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				a.log.ErrorContext(r.Context(), "panic", "request_id", RequestID(r.Context()), "panic", v)
				writeProblem(w, r, newProblem(http.StatusInternalServerError, "internal", "Internal error", ""))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// withCaller resolves the caller; no identity → 401, nothing else runs.
func (a *api) withCaller(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.who.Principal(r)
		note, _ := r.Context().Value(callerNoteKey{}).(*callerNote)
		if err != nil {
			if note != nil {
				note.err = err
			}
			writeProblem(w, r, ProblemFor(r.Context(), a.log, err))
			return
		}
		if note != nil {
			note.p = p
		}
		next.ServeHTTP(w, r.WithContext(caller.WithPrincipal(r.Context(), p)))
	})
}
