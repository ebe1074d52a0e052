module weblog

go 1.22
