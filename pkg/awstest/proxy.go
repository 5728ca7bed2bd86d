package awstest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
	"testing"
	"time"
)

// Proxy is a loopback reverse proxy in front of moto that can answer
// requests itself, for faults the SDK middleware cannot fake: a signature
// AWS rejects, throttling in the exact wire shape of each service, and
// network latency (a delay added to every request).
type Proxy struct {
	URL string

	srv *http.Server
	ln  net.Listener

	mu    sync.Mutex
	known map[string]bool // keys never rejected
	n     int             // rejections per other key
	seen  map[string]int  // access key id → requests seen

	delay     time.Duration
	throttle  float64 // fraction of IAM/STS/Secrets Manager calls answered Throttling
	rng       *rand.Rand
	requests  int           // AWS API requests that reached the proxy
	throttled int           // of those, answered with a throttling error
	delayed   int           // requests held for delay
	late      time.Duration // how much longer than delay they were held, in all

	strict         bool // StrictSecrets
	refusedDeleted int  // PutSecretValue calls refused as AWS would
	serverErrors   int  // moto's own 5xx answers
}

var (
	credentialRE = regexp.MustCompile(`Credential=([A-Z0-9]+)/`)
	// scopeRE finds the service of a SigV4 credential scope:
	// Credential=AKID/20261127/us-east-1/iam/aws4_request.
	scopeRE = regexp.MustCompile(`Credential=[^/,]+/[0-9]{8}/[^/,]+/([^/,]+)/aws4_request`)
)

// NewProxy starts a proxy to target, closed at cleanup.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p, err := StartProxy(target)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

// StartProxy starts a proxy to target on a loopback port. Stop it with
// Close. It is NewProxy for programs that are not tests (the benchmark).
func StartProxy(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("proxy target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	p := &Proxy{
		URL:   "http://" + ln.Addr().String(),
		ln:    ln,
		known: map[string]bool{},
		seen:  map[string]int{},
		rng:   rand.New(rand.NewPCG(1, 2)),
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	// The default transport keeps 2 idle connections per host: under
	// concurrent load most requests would open a new one to moto.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 512, 512
	rp.Transport = tr
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		if r.Context().Err() != nil {
			return // the client went away: nobody to answer, nothing to log
		}
		http.Error(w, "awstest proxy: "+err.Error(), http.StatusBadGateway)
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, rp)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Close stops the proxy.
func (p *Proxy) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if p.srv.Shutdown(ctx) != nil {
		_ = p.srv.Close()
	}
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	auth := r.Header.Get("Authorization")
	if auth == "" { // moto's own API (/moto-api/…): no delay, no faults
		next.ServeHTTP(w, r)
		return
	}
	p.mu.Lock()
	delay := p.delay
	p.requests++
	p.mu.Unlock()
	if delay > 0 {
		start := time.Now()
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
		late := time.Since(start) - delay
		p.mu.Lock()
		p.delayed++
		p.late += late
		p.mu.Unlock()
	}
	if id := accessKeyOf(r); id != "" && p.rejectNow(id) {
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error><RequestId>keyvend-proxy</RequestId></ErrorResponse>`))
		return
	}
	if !lastAttempt(r) && p.throttleNow(auth) {
		writeThrottling(w, r)
		return
	}
	if p.refuseDeletedSecret(w, r, next) {
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	next.ServeHTTP(sw, r)
	if sw.status >= 500 {
		p.mu.Lock()
		p.serverErrors++
		p.mu.Unlock()
	}
}

// SetDelay adds d to every AWS API request (one signed with SigV4) before
// it is forwarded or answered: a round trip to a distant AWS endpoint.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Throttle makes a fraction (0 to 1) of the IAM, STS and Secrets Manager
// calls fail with the throttling error each service sends: HTTP 400 with
// an XML ErrorResponse whose Code is Throttling (the query protocol of IAM
// and STS), or a JSON body with __type ThrottlingException (Secrets
// Manager). seed makes the choice repeatable for a sequential caller.
// A call's last attempt (amz-sdk-request: attempt=N; max=N) is never
// throttled: with a fraction f, a call of 8 attempts would otherwise fail
// f^8 of the time by chance (0.3^8: about one run in a hundred of a test
// making 150 calls), and the tests that throttle are about retries and
// the rate limiter, not about luck.
func (p *Proxy) Throttle(fraction float64, seed uint64) {
	p.mu.Lock()
	p.throttle = fraction
	p.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p.mu.Unlock()
}

// ProxyStats counts the AWS API requests a proxy saw.
type ProxyStats struct {
	Requests  int // every attempt, retries included
	Throttled int // answered with a throttling error
	// Delayed requests were held for the delay; Late is how much longer
	// than the delay they were held in all (timer and scheduling lateness,
	// which a loaded machine adds to every round trip).
	Delayed int
	Late    time.Duration
	// ServerErrors are answers of 500 or more from moto itself (its
	// DynamoDB fails a transaction that races another write with a 500,
	// which the SDK retries).
	ServerErrors int
}

// Stats returns the counts so far.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProxyStats{Requests: p.requests, Throttled: p.throttled, Delayed: p.delayed, Late: p.late, ServerErrors: p.serverErrors}
}

func (p *Proxy) throttleNow(auth string) bool {
	m := scopeRE.FindStringSubmatch(auth)
	if m == nil {
		return false
	}
	switch m[1] {
	case "iam", "sts", "secretsmanager":
	default:
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.throttle <= 0 || p.rng.Float64() >= p.throttle {
		return false
	}
	p.throttled++
	return true
}

// lastAttempt reports whether r is its call's last attempt, as the SDK's
// amz-sdk-request header says (attempt=N; max=N).
func lastAttempt(r *http.Request) bool {
	var n, max int
	_, err := fmt.Sscanf(r.Header.Get("amz-sdk-request"), "attempt=%d; max=%d", &n, &max)
	return err == nil && n >= max
}

// writeThrottling answers as AWS does when it throttles: JSON-protocol
// services (X-Amz-Target set: Secrets Manager) with __type, query-protocol
// services (IAM, STS) with an XML ErrorResponse.
func writeThrottling(w http.ResponseWriter, r *http.Request) {
	reqID := fmt.Sprintf("keyvend-proxy-%d", time.Now().UnixNano())
	w.Header().Set("X-Amzn-Requestid", reqID)
	if r.Header.Get("X-Amz-Target") != "" {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		w.Header().Set("X-Amzn-Errortype", "ThrottlingException")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"__type":"ThrottlingException","message":"Rate exceeded"}`))
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w, `<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>%s</RequestId></ErrorResponse>`, reqID)
}

// RejectNewKeys makes the first n requests signed with each access key
// not in known fail with InvalidClientTokenId, as AWS answers for a key
// that has not propagated yet.
func (p *Proxy) RejectNewKeys(n int, known ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n = n
	for _, k := range known {
		p.known[k] = true
	}
}

// Seen returns how many requests signed with key reached the proxy.
func (p *Proxy) Seen(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[key]
}

func (p *Proxy) rejectNow(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[id]++
	return !p.known[id] && p.seen[id] <= p.n
}

func accessKeyOf(r *http.Request) string {
	m := credentialRE.FindStringSubmatch(r.Header.Get("Authorization"))
	if m == nil {
		return ""
	}
	return m[1]
}

// statusWriter remembers the status of the answer it writes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
