// Package moto runs a moto_server, the local AWS that keyvend's local mode
// and its tests talk to over HTTP on a loopback port.
package moto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server is a running moto_server.
type Server struct {
	// URL is the endpoint, e.g. http://127.0.0.1:41234.
	URL  string
	cmd  *exec.Cmd
	done chan error
}

// Options tune Start.
type Options struct {
	// Env is added to moto_server's environment, e.g.
	// INITIAL_NO_AUTH_ACTION_COUNT=5 to enforce IAM after five calls.
	Env []string
	// Output receives moto_server's own log; nil discards it.
	Output io.Writer
	// ReadyTimeout bounds the wait for the server (30s).
	ReadyTimeout time.Duration
}

// Binary is the moto_server executable: $KEYVEND_MOTO_SERVER or moto_server.
func Binary() string {
	if b := os.Getenv("KEYVEND_MOTO_SERVER"); b != "" {
		return b
	}
	return "moto_server"
}

// Start launches moto_server on a free loopback port and waits until it
// answers. Stop it with Stop.
func Start(ctx context.Context, opts Options) (*Server, error) {
	bin, err := exec.LookPath(Binary())
	if err != nil {
		return nil, fmt.Errorf("moto_server not found (pip install 'moto[server]'): %w", err)
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := launch(ctx, bin, port, opts)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func launch(ctx context.Context, bin string, port int, opts Options) (*Server, error) {
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), opts.Env...)
	out := opts.Output
	if out == nil {
		out = io.Discard
	}
	var tail tailBuffer
	cmd.Stdout = io.MultiWriter(out, &tail)
	cmd.Stderr = io.MultiWriter(out, &tail)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start moto_server: %w", err)
	}
	s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()

	deadline := time.Now().Add(opts.ReadyTimeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("moto_server exited before it was ready (%v): %s", err, tail.String())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := client.Get(s.URL + "/moto-api/data.json")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
	}
	s.Stop()
	return nil, fmt.Errorf("moto_server on %s not ready after %s: %s", s.URL, opts.ReadyTimeout, tail.String())
}

// Stop terminates the server and waits for it (at most 5s, then kills it).
func (s *Server) Stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Reset wipes every resource in the server (not its auth setting).
func (s *Server) Reset(ctx context.Context) error {
	return s.post(ctx, "/moto-api/reset", "")
}

// EnforceIAM turns signature and policy checks on or off for all later
// requests. With them on, only principals with policies get anywhere.
func (s *Server) EnforceIAM(ctx context.Context, on bool) error {
	body := "inf"
	if on {
		body = "0"
	}
	return s.post(ctx, "/moto-api/reset-auth", body)
}

func (s *Server) post(ctx context.Context, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("moto %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("moto %s: %s: %s", path, resp.Status, b)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("find a free loopback port: not a TCP address")
	}
	return addr.Port, nil
}

// tailBuffer keeps the last 2 KiB written, for error messages.
type tailBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if t.b.Len() > 2048 {
		keep := t.b.Bytes()[t.b.Len()-2048:]
		t.b = *bytes.NewBuffer(append([]byte(nil), keep...))
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(t.b.String())
}
