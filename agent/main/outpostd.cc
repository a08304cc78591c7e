#include "outpost/agent/agent.h"

int main(int argc, char** argv) { return outpost::agent::runDaemon(argc, argv); }
