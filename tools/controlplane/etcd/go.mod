module kustos.invalid/controlplane/etcd

go 1.26
