package awsclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/keyvend/keyvend/pkg/awstest"
)

// TestLoadOverLoopback: keyvend's real handler behind a real http.Server
// on 127.0.0.1, with production SDK settings, on its own moto. 200
// concurrent provisions of distinct users (over 10 buckets, so groups are
// created under contention too) plus 20 of one same user, all released at
// once. No answer is a 5xx; every distinct user gets 201; of the 20
// identical requests exactly one creates the key and every other gets it
// too (200) or is told to retry (409 with Retry-After). Afterwards every
// user under /keyvend/ has exactly one key, the one in its secret.
func TestLoadOverLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	srv := awstest.Dedicated(t)
	ts := httptest.NewServer(newHandler(t, awstest.Production(t, srv.URL)))
	t.Cleanup(ts.Close)
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	t.Cleanup(client.CloseIdleConnections)

	type answer struct {
		user       string
		status     int
		retryAfter string
		keyID      string
		body       string
		err        error
	}
	const distinct, same = 200, 20
	prefix := awstest.Name("load")
	sameUser := prefix + "-same"
	var jobs []string // user of each request
	for i := range distinct {
		jobs = append(jobs, fmt.Sprintf("%s-%03d", prefix, i))
	}
	for range same {
		jobs = append(jobs, sameUser)
	}
	bucketOf := func(user string, i int) string {
		if user == sameUser {
			return prefix + "-same.example.com"
		}
		return fmt.Sprintf("%s-%d.example.com", prefix, i%10)
	}
	answers := make([]answer, len(jobs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, user := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a := answer{user: user}
			resp, err := client.Post(ts.URL+"/v1/users", "application/json", strings.NewReader(createBody(user, bucketOf(user, i))))
			if err != nil {
				a.err = err
				answers[i] = a
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			a.status, a.retryAfter, a.body = resp.StatusCode, resp.Header.Get("Retry-After"), string(body)
			var res struct {
				AccessKeyID string `json:"access_key_id"`
			}
			_ = json.Unmarshal(body, &res)
			a.keyID = res.AccessKeyID
			answers[i] = a
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d concurrent requests answered in %s", len(jobs), time.Since(t0).Round(time.Millisecond))

	counts := map[int]int{}
	created, sameKey := 0, ""
	for _, a := range answers {
		switch {
		case a.err != nil:
			t.Errorf("%s: %v", a.user, a.err)
			continue
		case a.status >= 500:
			t.Errorf("%s: HTTP %d: %s", a.user, a.status, a.body)
		}
		counts[a.status]++
		if a.user != sameUser {
			if a.status != http.StatusCreated {
				t.Errorf("%s: HTTP %d, want 201: %s", a.user, a.status, a.body)
			}
			continue
		}
		switch a.status {
		case http.StatusCreated, http.StatusOK:
			if a.status == http.StatusCreated {
				created++
			}
			if sameKey == "" {
				sameKey = a.keyID
			}
			if a.keyID == "" || a.keyID != sameKey {
				t.Errorf("same user: key %q, another answer had %q", a.keyID, sameKey)
			}
		case http.StatusConflict:
			if a.retryAfter == "" {
				t.Errorf("same user: 409 without Retry-After: %s", a.body)
			}
		default:
			t.Errorf("same user: HTTP %d: %s", a.status, a.body)
		}
	}
	t.Logf("answers by status: %v", counts)
	if created != 1 {
		t.Errorf("%d of the %d identical requests created the user, want exactly 1", created, same)
	}

	// Every user keyvend made: exactly one key, the one in its secret.
	check := newChecker(t, srv.URL)
	users := 0
	p := iam.NewListUsersPaginator(check.iam, &iam.ListUsersInput{PathPrefix: aws.String("/keyvend/")})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range page.Users {
			users++
			name := aws.ToString(u.UserName)
			ids, inSecret := check.keys(t, name)
			if len(ids) != 1 || ids[0] != inSecret {
				t.Errorf("user %s: keys %v, secret holds %q: want exactly the secret's key", name, ids, inSecret)
			}
			if name == sameUser && inSecret != sameKey {
				t.Errorf("same user: secret holds %s, the answers said %s", inSecret, sameKey)
			}
		}
	}
	if users != distinct+1 {
		t.Errorf("%d users under /keyvend/, want %d", users, distinct+1)
	}
}
