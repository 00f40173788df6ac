module ipamd/plugin

go 1.19
