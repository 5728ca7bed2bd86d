package moto

import "syscall"

// sysProcAttr asks the kernel to stop moto_server when keyvend dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
