module github.com/cluster-connect/cluster-connect/bench/compare

go 1.26
