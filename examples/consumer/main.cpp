#include <iostream>

#include <ipp/client.hpp>

int main(int argc, char** argv) {
  auto client = ipp::Client::Connect(ipp::ClientOptions::File(argc > 1 ? argv[1] : ""));
  if (!client.ok()) {
    std::cout << "consumer built; connect said: " << client.status().ToString() << std::endl;
    return 0;
  }
  std::cout << (*client)->ids().size() << " engines" << std::endl;
  return 0;
}
