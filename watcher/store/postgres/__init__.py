"""The shared store on PostgreSQL (`store.url`): several replicas on one database. The embedded
store's repositories run over a connection that speaks PostgreSQL (`connection`), with their own
schema (`migrations`) and the statements that differ written for PostgreSQL here (`store`)."""
