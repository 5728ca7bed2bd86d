package main

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
)

// keyed makes one request to keyvend with an Idempotency-Key.
func (s *server) keyed(t *testing.T, method, path, key string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestServeIdempotencyKeys: `keyvend serve` on its embedded moto keeps
// idempotency keys in the embedded state table: a rotate sent again with
// its key is the first's answer, and a second keyvend serve sharing that
// moto (through .keyvend/local.env, as a second Lambda instance shares
// the table) answers it the same, rotating nothing.
func TestServeIdempotencyKeys(t *testing.T) {
	t.Parallel()
	dir := checkout(t)
	kv := startServe(t, dir, cleanEnv(dir, "KEYVEND_LISTEN="+freeAddr(t)))
	v, _ := kv.vend(t, `{"user":"idem-deployer","grants":[{"bucket":"site.example.com","access":"read-write"}],"reason":"retries"}`)

	rotate := "/v1/users/" + v.User + "/rotate"
	resp, first := kv.keyed(t, http.MethodPost, rotate, "rotate-once")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Idempotency-Replayed") != "" {
		t.Fatalf("rotate: %s %s", resp.Status, first)
	}
	var r struct {
		AccessKeyID string `json:"access_key_id"`
	}
	if err := json.Unmarshal(first, &r); err != nil || r.AccessKeyID == "" || r.AccessKeyID == v.AccessKeyID {
		t.Fatalf("rotate answer %s: %v", first, err)
	}
	resp, again := kv.keyed(t, http.MethodPost, rotate, "rotate-once")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Idempotency-Replayed") != "true" || string(again) != string(first) {
		t.Errorf("the same rotate again: %s replayed=%q %s", resp.Status, resp.Header.Get("Idempotency-Replayed"), again)
	}

	// A second keyvend on the same moto and table.
	var shared []string
	for k, val := range readExports(t, filepath.Join(dir, ".keyvend", "local.env")) {
		shared = append(shared, k+"="+val)
	}
	second := startServe(t, dir, cleanEnv(dir, append(shared, "KEYVEND_LISTEN="+freeAddr(t))...))
	resp, third := second.keyed(t, http.MethodPost, rotate, "rotate-once")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Idempotency-Replayed") != "true" || string(third) != string(first) {
		t.Errorf("the same rotate on a second keyvend: %s replayed=%q %s", resp.Status, resp.Header.Get("Idempotency-Replayed"), third)
	}
	resp, raw := second.call(t, http.MethodGet, "/v1/users/"+v.User, "")
	var d struct {
		AccessKeys []struct {
			AccessKeyID string `json:"access_key_id"`
		} `json:"access_keys"`
	}
	if err := json.Unmarshal(raw, &d); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("describe: %s %s", resp.Status, raw)
	}
	// The first rotate's key, and the vended one, kept for its grace: no third.
	var ids []string
	for _, k := range d.AccessKeys {
		ids = append(ids, k.AccessKeyID)
	}
	if slices.Sort(ids); !slices.Equal(ids, sortedIDs(r.AccessKeyID, v.AccessKeyID)) {
		t.Errorf("keys %v, want the first rotate's %s and the previous %s", ids, r.AccessKeyID, v.AccessKeyID)
	}
}

func sortedIDs(ids ...string) []string {
	slices.Sort(ids)
	return ids
}
