
5
$6a1d9c7e-3f0b-4c2a-8e5d-9b7c6a5f4e31û‚ãœó1"4711(9
edgecontrollerresource"insert*default/configmap/cfgU{"kind":"ConfigMap","metadata":{"name":"cfg","namespace":"default"},"data":{"a":"1"}}