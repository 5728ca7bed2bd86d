package policy

// CheckPrefix is checkPrefix, for the tests of package policy_test.
var CheckPrefix = checkPrefix
