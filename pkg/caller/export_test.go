package caller

// NormalizeARN is normalizeARN, for the tests of package caller_test.
var NormalizeARN = normalizeARN
