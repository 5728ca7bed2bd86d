package awstest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
)

// StrictSecrets makes the proxy answer as AWS where moto is lenient
// (../shared/reference/moto.md): AWS refuses PutSecretValue on a secret
// scheduled for deletion (InvalidRequestException, "marked for deletion")
// and moto accepts it — which hides the worst race of all, a rotation's
// store step bringing back the secret of a user a delete just removed.
// The proxy asks moto itself (DescribeSecret) before forwarding.
func (p *Proxy) StrictSecrets() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.strict = true
}

// refuseDeletedSecret answers r itself, as AWS would, if it is a
// PutSecretValue on a secret moto says is scheduled for deletion.
func (p *Proxy) refuseDeletedSecret(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
	p.mu.Lock()
	strict := p.strict
	p.mu.Unlock()
	if !strict || r.Header.Get("X-Amz-Target") != "secretsmanager.PutSecretValue" {
		return false
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return false
	}
	var in struct{ SecretId string }
	if json.Unmarshal(body, &in) != nil || in.SecretId == "" {
		return false
	}
	// DescribeSecret through moto, with the caller's own signature
	// headers replaced: moto does not check signatures by default.
	desc, _ := json.Marshal(map[string]string{"SecretId": in.SecretId})
	q, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, (&url.URL{Path: "/"}).String(), bytes.NewReader(desc))
	q.Header = r.Header.Clone()
	q.Header.Set("X-Amz-Target", "secretsmanager.DescribeSecret")
	q.Header.Del("Content-Length")
	q.ContentLength = int64(len(desc))
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, q)
	var out struct{ DeletedDate any }
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &out) != nil || out.DeletedDate == nil {
		return false
	}
	p.mu.Lock()
	p.refusedDeleted++
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", "keyvend-strict-proxy")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = io.Copy(w, strings.NewReader(`{"__type":"InvalidRequestException","message":"You can't perform this operation on the secret because it was marked for deletion."}`))
	return true
}

// RefusedDeleted is how many PutSecretValue calls the strict proxy
// refused because their secret was scheduled for deletion.
func (p *Proxy) RefusedDeleted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refusedDeleted
}
