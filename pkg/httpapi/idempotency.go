package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/keyvend/keyvend/pkg/caller"
	"github.com/keyvend/keyvend/pkg/idempotency"
	"github.com/keyvend/keyvend/pkg/policy"
)

// The idempotency headers: a client's key on a mutating request, and the
// mark of an answer that is a stored one.
const (
	IdempotencyKeyHeader = "Idempotency-Key"
	ReplayedHeader       = "Idempotency-Replayed"
)

// idempotencyRetryAfter is the Retry-After of a key in progress.
const idempotencyRetryAfter = 2 * time.Second

// WithIdempotency keeps the answers of requests sent with an
// Idempotency-Key in s (the state table). Without it, a request with a
// key is refused: acting on it without the guarantee it asks for would be
// worse.
func WithIdempotency(s *idempotency.Store) Option {
	return func(a *api) { a.idem = s }
}

// idempotent runs next under the request's Idempotency-Key, if it has
// one: the same key from the same requester with the same request within
// 24 h is answered with the stored answer (marked Idempotency-Replayed:
// true) and next does not run; with another request it is a 422; while
// the first is still running, a 409 in-progress. Answers that say to try
// again — a 5xx, or one with Retry-After — are not stored, so the retry
// acts again.
//
// The request is the method, the escaped path, the raw query and the
// body, its JSON whitespace compacted; the requester is the caller as
// authenticated (an assumed-role session, not its role).
func (a *api) idempotent(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		keys := r.Header.Values(IdempotencyKeyHeader)
		if len(keys) == 0 {
			next(w, r)
			return
		}
		if len(keys) > 1 || idempotency.CheckKey(keys[0]) != nil {
			p := newProblem(http.StatusBadRequest, "validation", "Invalid request", "the Idempotency-Key header is not valid")
			p.Errors = []policy.FieldError{{Field: IdempotencyKeyHeader, Detail: "must be given once, 1 to 255 printable ASCII characters"}}
			writeProblem(w, r, p)
			return
		}
		if a.idem == nil {
			a.log.ErrorContext(r.Context(), "a request has an Idempotency-Key and keyvend has no state table (KEYVEND_TABLE)", "request_id", RequestID(r.Context()))
			writeProblem(w, r, newProblem(http.StatusInternalServerError, "internal", "Internal error",
				"Idempotency-Key needs keyvend's state table and this keyvend has none: the operator must set KEYVEND_TABLE"))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
		if err != nil {
			writeProblem(w, r, newProblem(http.StatusBadRequest, "bad-body", "Unreadable body", "the request body could not be read"))
			return
		}
		if len(body) > MaxBodyBytes {
			// Too large for any handler: it answers 413 without acting.
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
			next(w, r)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		p, _ := caller.FromContext(r.Context())
		claim, err := a.idem.Begin(r.Context(), p.Requester(), keys[0], fingerprint(r, body))
		if err != nil {
			writeProblem(w, r, ProblemFor(r.Context(), a.log, err))
			return
		}
		switch claim.Outcome {
		case idempotency.Replay:
			replay(w, claim.Answer)
		case idempotency.InProgress:
			pr := newProblem(http.StatusConflict, "in-progress", "In progress", "a request with this Idempotency-Key is still in progress: retry after Retry-After seconds")
			pr.retryAfter = idempotencyRetryAfter
			writeProblem(w, r, pr)
		case idempotency.Mismatch:
			writeProblem(w, r, newProblem(http.StatusUnprocessableEntity, "idempotency-key-reused", "Idempotency-Key reused",
				"this Idempotency-Key was used for another request (method, path, query or body) within 24 hours: use a new key for a new request"))
		case idempotency.Proceed:
			a.proceed(w, r, claim, next)
		default:
			writeProblem(w, r, ProblemFor(r.Context(), a.log, errors.New("idempotency: unknown outcome "+claim.Outcome.String())))
		}
	}
}

// proceed runs next holding claim, then stores its answer (or gives the
// key back) and sends the answer. A panic gives the key back too.
func (a *api) proceed(w http.ResponseWriter, r *http.Request, claim *idempotency.Claim, next http.HandlerFunc) {
	// The claim is settled even if the client has gone.
	settle := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
	}
	rec := &answerRecorder{header: http.Header{}}
	finished := false
	defer func() {
		if !finished {
			ctx, cancel := settle()
			defer cancel()
			if err := a.idem.Abandon(ctx, claim); err != nil {
				a.log.ErrorContext(ctx, "idempotency key not released after a panic", "request_id", RequestID(r.Context()), "error", err.Error())
			}
		}
	}()
	next(rec, r)
	finished = true
	if rec.status == 0 {
		rec.status = http.StatusOK
	}

	ctx, cancel := settle()
	defer cancel()
	if rec.status >= 500 || rec.header.Get("Retry-After") != "" {
		if err := a.idem.Abandon(ctx, claim); err != nil {
			a.log.ErrorContext(ctx, "idempotency key not released", "request_id", RequestID(r.Context()), "error", err.Error())
		}
	} else if err := a.idem.Finish(ctx, claim, idempotency.Answer{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()}); err != nil {
		// The answer still goes to the client; a retry will find the key
		// held until its lease goes stale, then act again.
		a.log.ErrorContext(ctx, "idempotency answer not stored", "request_id", RequestID(r.Context()), "error", err.Error())
		if errors.Is(err, idempotency.ErrTooLarge) {
			_ = a.idem.Abandon(ctx, claim)
		}
	}
	h := w.Header()
	for name, v := range rec.header {
		h[name] = v
	}
	w.WriteHeader(rec.status)
	_, _ = w.Write(rec.body.Bytes())
}

// replay writes a stored answer.
func replay(w http.ResponseWriter, a *idempotency.Answer) {
	h := w.Header()
	for name, v := range a.Header {
		h[name] = append([]string(nil), v...)
	}
	h.Set(ReplayedHeader, "true")
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}

// fingerprint is what makes two requests with a key the same request.
func fingerprint(r *http.Request, body []byte) []byte {
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		compact.Reset()
		compact.Write(body) // not JSON (or none): as sent
	}
	// If-Match is part of the request: the same key with another version
	// precondition is another request (422), not a replay.
	return append([]byte(r.Method+"\n"+r.URL.EscapedPath()+"\n"+r.URL.RawQuery+"\n"+strings.Join(r.Header.Values("If-Match"), ",")+"\n"), compact.Bytes()...)
}

// answerRecorder keeps a handler's answer until it is stored.
type answerRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (a *answerRecorder) Header() http.Header { return a.header }

func (a *answerRecorder) WriteHeader(code int) {
	if a.status == 0 {
		a.status = code
	}
}

func (a *answerRecorder) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.status = http.StatusOK
	}
	return a.body.Write(b)
}
