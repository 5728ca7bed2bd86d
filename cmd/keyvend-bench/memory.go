package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// memResult is the peak RSS of `keyvend serve` after n provisions.
type memResult struct {
	Provisions int
	PeakRSS    int64 // bytes (VmHWM)
	RSS        int64 // bytes, at the end (VmRSS)
	Elapsed    time.Duration
}

// measureMemory builds keyvend, runs `keyvend serve` with its embedded moto
// (its own process group: both are stopped on return), provisions n users
// one after the other over HTTP, and reads the server's peak RSS.
func measureMemory(ctx context.Context, dir string, n int, progress func(string)) (*memResult, error) {
	bin := filepath.Join(dir, "keyvend")
	progress("build keyvend")
	build := exec.CommandContext(ctx, goTool(), "build", "-o", bin, "./cmd/keyvend")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build ./cmd/keyvend: %v: %s", err, out)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--env-file", filepath.Join(dir, "local.env"))
	cmd.Env = functionEnv(dir, "KEYVEND_LISTEN="+addr)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.HasPrefix(sc.Text(), "keyvend ready on") {
				ready <- nil
				signalled = true
			}
		}
		if !signalled {
			ready <- fmt.Errorf("keyvend serve exited before it was ready: %s", stderr.String())
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("keyvend serve not ready after 60 s: %s", stderr.String())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	client := &http.Client{Timeout: 30 * time.Second}
	start := time.Now()
	for i := range n {
		// rules/demo.json lets the local caller vend read-write on
		// *.example.com; 50 buckets keep every group small (moto answers
		// GetGroup with every member).
		body := fmt.Sprintf(`{"user":"mem-%04d","grants":[{"bucket":"mem-%02d.example.com","access":"read-write","prefix":""}],"reason":"memory benchmark"}`, i, i%50)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/v1/users", strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("provision %d: %w", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			return nil, fmt.Errorf("provision %d: HTTP %d: %s", i, resp.StatusCode, b)
		}
		if (i+1)%250 == 0 {
			progress(fmt.Sprintf("memory: %d/%d provisions", i+1, n))
		}
	}
	res := &memResult{Provisions: n, Elapsed: time.Since(start)}
	if res.PeakRSS, res.RSS, err = rssOf(cmd.Process.Pid); err != nil {
		return nil, err
	}
	// Stop it as Ctrl-C does: it stops its moto and removes its env file.
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
		stopped = true
	case <-time.After(15 * time.Second):
	}
	return res, nil
}

// rssOf reads VmHWM (peak resident set) and VmRSS of pid.
func rssOf(pid int) (peak, now int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("read the server's memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			peak = kb << 10
		case "VmRSS:":
			now = kb << 10
		}
	}
	if peak == 0 {
		return 0, 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
	}
	return peak, now, nil
}
