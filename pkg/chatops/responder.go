package chatops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// defaultResponseHost is where Slack's response_urls point.
const defaultResponseHost = "hooks.slack.com"

// ResponseHosts are the hosts keyvend posts results to. A response_url
// must be https on one of them (port 443), except that a loopback host
// (127.0.0.1, ::1, localhost) listed here may be plain http on any port,
// for local demos and tests.
type ResponseHosts []string

// ParseResponseHosts reads a comma-separated host list; empty means
// defaultResponseHost.
func ParseResponseHosts(s string) ResponseHosts {
	var hs ResponseHosts
	for _, h := range strings.Split(s, ",") {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		hs = ResponseHosts{defaultResponseHost}
	}
	return hs
}

// Check returns why keyvend will not post to raw, or nil.
func (hs ResponseHosts) Check(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.User != nil || u.Opaque != "" {
		return fmt.Errorf("response_url is not an absolute URL")
	}
	host := strings.ToLower(u.Hostname())
	allowed := false
	for _, h := range hs {
		if host == h {
			allowed = true
		}
	}
	if !allowed {
		return fmt.Errorf("response_url host %q is not one keyvend posts to (%s)", host, strings.Join(hs, ", "))
	}
	switch {
	case u.Scheme == "https" && (u.Port() == "" || u.Port() == "443"):
		return nil
	case loopback(host) && (u.Scheme == "http" || u.Scheme == "https"):
		return nil
	}
	return fmt.Errorf("response_url must be https://%s/…", host)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Responder posts messages to response_urls.
type Responder struct {
	Hosts ResponseHosts
	// Client posts; nil means one with a 10 s timeout. Redirects are
	// never followed: a response_url answers itself or not at all.
	Client *http.Client
	// Attempts is how often a post is tried (3); Backoff the first pause
	// between tries, doubled each time (500 ms).
	Attempts int
	Backoff  time.Duration
}

// Post sends msg to the response_url raw, retrying transient failures.
func (r *Responder) Post(ctx context.Context, raw string, msg *slack.WebhookMessage) error {
	if err := r.Hosts.Check(raw); err != nil {
		return err
	}
	client := r.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	noRedirects := *client
	noRedirects.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	attempts, pause := r.Attempts, r.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if pause <= 0 {
		pause = 500 * time.Millisecond
	}
	var err error
	for i := 0; i < attempts; i++ {
		if i > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			case <-time.After(pause):
			}
			pause *= 2
		}
		if err = slack.PostWebhookCustomHTTPContext(ctx, raw, &noRedirects, msg); err == nil {
			return nil
		}
		var se slack.StatusCodeError
		if errors.As(err, &se) && se.Code < 500 && se.Code != http.StatusTooManyRequests {
			break // Slack refused the message (expired url, bad payload): trying again will not help
		}
	}
	// The URL's path is a capability: keep it out of the error (and so the logs).
	return fmt.Errorf("post to the response_url of host %s: %s", hostOf(raw), strings.ReplaceAll(err.Error(), raw, redactURL(raw)))
}

// redactURL is raw without its path and query.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Scheme + "://" + u.Host + "/…"
	}
	return "(response_url)"
}

// hostOf names the host of a response_url for logs: the path is a
// capability and is never logged.
func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return "(unparsable)"
}
