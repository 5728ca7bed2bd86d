package awstest

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sync"
	"testing"
)

// Proxy is a loopback reverse proxy in front of moto that can answer
// requests itself, for faults the SDK middleware cannot fake (e.g. a
// signature AWS rejects).
type Proxy struct {
	URL string

	mu    sync.Mutex
	known map[string]bool // keys never rejected
	n     int             // rejections per other key
	seen  map[string]int  // access key id → requests seen
}

var credentialRE = regexp.MustCompile(`Credential=([A-Z0-9]+)/`)

// NewProxy starts a proxy to target, closed at cleanup.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	u, err := url.Parse(target)
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{known: map[string]bool{}, seen: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := accessKeyOf(r); id != "" && p.rejectNow(id) {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code><Message>The security token included in the request is invalid.</Message></Error><RequestId>keyvend-proxy</RequestId></ErrorResponse>`))
			return
		}
		rp.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
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
