// Command emptyfn is the smallest aws-lambda-go function: the baseline
// keyvend-bench compares the functions' cold start and size with.
package main

import "github.com/aws/aws-lambda-go/lambda"

func main() {
	lambda.Start(func() (string, error) { return "ok", nil })
}
