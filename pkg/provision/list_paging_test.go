package provision_test

import (
	"testing"

	"github.com/keyvend/keyvend/pkg/awstest"
	"github.com/keyvend/keyvend/pkg/provision"
)

// moto ignores ListUsers' MaxItems and Marker and answers every user at
// once; keyvend then pages the answer itself (the token carries a skip
// count). Real IAM never answers more than MaxItems. This test runs
// without list_test.go's IAM-like pager, against moto as it is.
func TestListPagesAnEndpointThatIgnoresMaxItems(t *testing.T) {
	srv := awstest.Dedicated(t)
	e := newEnvOn(t, srv.URL, testRules)
	const n = 7
	for i := 0; i < n; i++ {
		if _, err := e.svc.Create(ctx(), input(awstest.Name("pg"), rw(awstest.Name("b")+".example.com"))); err != nil {
			t.Fatal(err)
		}
	}
	got, pages := listAll(t, e.svc, provision.ListInput{Principal: who(testCaller), Limit: 3})
	if len(got) != n {
		t.Fatalf("listed %d users, want %d", len(got), n)
	}
	if want := []int{3, 3, 1}; len(pages) != len(want) || pages[0] != 3 || pages[1] != 3 || pages[2] != 1 {
		t.Fatalf("page sizes %v, want %v", pages, want)
	}
}
