

2b9e4d1c6a1d9c7e"response*default/pod/nginx"OK"