package slacksig

import (
	"sync"
	"time"
)

// defaultReplayCapacity bounds the replay cache.
const defaultReplayCapacity = 10000

// ReplayCache remembers the signatures of recently accepted requests, for
// as long as Slack's 5-minute window would accept them again, so a
// captured request cannot be replayed. It is in memory: each Lambda
// execution environment (and each local server) has its own, so a replay
// that reaches another environment is not caught. It holds at most its
// capacity; beyond that it forgets the oldest signatures first.
type ReplayCache struct {
	mu       sync.Mutex
	capacity int
	until    map[string]time.Time // signature → end of its window
	order    []string             // signatures, oldest first
}

// NewReplayCache returns a cache for up to capacity signatures
// (defaultReplayCapacity when capacity ≤ 0).
func NewReplayCache(capacity int) *ReplayCache {
	if capacity <= 0 {
		capacity = defaultReplayCapacity
	}
	return &ReplayCache{capacity: capacity, until: map[string]time.Time{}}
}

// Seen reports whether signature was already accepted and is still within
// its window at now; otherwise it records it until until and reports false.
func (c *ReplayCache) Seen(signature string, until, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if end, ok := c.until[signature]; ok && now.Before(end) {
		return true
	}
	c.prune(now)
	for len(c.until) >= c.capacity && len(c.order) > 0 {
		c.drop()
	}
	if _, ok := c.until[signature]; !ok {
		c.order = append(c.order, signature)
	}
	c.until[signature] = until
	return false
}

// Len is the number of signatures remembered.
func (c *ReplayCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.until)
}

// prune forgets signatures whose window has ended, from the oldest on.
func (c *ReplayCache) prune(now time.Time) {
	for len(c.order) > 0 {
		end, ok := c.until[c.order[0]]
		if ok && now.Before(end) {
			return
		}
		c.drop()
	}
}

func (c *ReplayCache) drop() {
	delete(c.until, c.order[0])
	c.order[0] = ""
	c.order = c.order[1:]
}
