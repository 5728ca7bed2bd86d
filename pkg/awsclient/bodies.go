package awsclient

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// OwnBodies is next sending each request with a copy of its body, which
// nothing but net/http reads or closes. Load's clients use it, and so do
// the tests' (awstest.Config).
//
// Without the copy, a call could fail after AWS (or moto) answered 200 ("use of
// closed network connection" while the answer's body is read), and a
// write that was applied would be reported failed — and the retryer,
// which resends a call whose connection broke, would send a conditional
// write again, to fail its condition. The SDK closes its
// request body as soon as the answer's headers are in (smithy-go
// ClientHandler), while net/http's write loop may still be using it:
// having sent Content-Length bytes, it reads the body once more to check
// nothing is left over, and the SDK's closed body answers that read with
// io.EOF as an error (its WriteTo). The write loop takes it for a failed
// write and closes the connection under the reader of the answer. moto
// answers over loopback as soon as it has the bytes, so on a loaded
// machine the answer beats the write loop's last read now and then (one
// make test in four failed so); AWS, a network round trip away, rarely.
// TestClosedBodyRace (pkg/awstest) shows it.
func OwnBodies(next aws.HTTPClient) aws.HTTPClient { return ownBodies{next} }

type ownBodies struct{ next aws.HTTPClient }

func (c ownBodies) Do(r *http.Request) (*http.Response, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return c.next.Do(r)
	}
	b, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read the request body: %w", err)
	}
	own := r.Clone(r.Context())
	own.Body = io.NopCloser(bytes.NewReader(b))
	own.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	own.ContentLength = int64(len(b))
	return c.next.Do(own)
}
