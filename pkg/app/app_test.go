package app_test

import (
	"fmt"
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

func createBody(user, bucket string) string {
	return fmt.Sprintf(`{"user":%q,"grants":[{"bucket":%q,"access":"read-write","prefix":""}],"reason":"test"}`, user, bucket)
}
