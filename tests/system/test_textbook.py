"""
The textbook clients of Kurose & Ross section 2.7, against upperd: Python
TCPClient/UDPClient as printed (one send without newline and one
recv(1024); sendto + recvfrom(2048)), and the Java TCPClient/UDPClient,
written out, compiled with javac and run with java.
"""

import socket
import subprocess

import pytest

from conftest import need_tool, wait_until

SENTENCES = [
    "input lowercase sentence",
    "hello",
    "the quick brown fox jumps over the lazy dog 0123456789 !?",
    "x",
]


def python_tcp_client(port, sentence):
    # TCPClient.py from the book; a timeout added so the test is bounded.
    serverName = "127.0.0.1"
    serverPort = port
    clientSocket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    clientSocket.settimeout(10)
    clientSocket.connect((serverName, serverPort))
    clientSocket.send(sentence.encode())
    modifiedSentence = clientSocket.recv(1024)
    clientSocket.close()
    return modifiedSentence.decode()


def python_udp_client(port, message):
    # UDPClient.py from the book; a timeout added so the test is bounded.
    serverName = "127.0.0.1"
    serverPort = port
    clientSocket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    clientSocket.settimeout(10)
    clientSocket.sendto(message.encode(), (serverName, serverPort))
    modifiedMessage, serverAddress = clientSocket.recvfrom(2048)
    clientSocket.close()
    return modifiedMessage.decode(), serverAddress


def test_python_tcp_client(daemon):
    for sentence in SENTENCES * 5:
        assert python_tcp_client(daemon.tcp_port, sentence) == \
            sentence.upper()


def test_python_udp_client(daemon):
    for message in SENTENCES * 5:
        reply, addr = python_udp_client(daemon.udp_port, message)
        assert reply == message.upper()
        # The reply comes from the address the client sent to.
        assert addr == ("127.0.0.1", daemon.udp_port)


def test_textbook_clients_counted(daemon):
    """The textbook exchange shows up in the counters, exactly."""
    python_tcp_client(daemon.tcp_port, "hello")
    python_udp_client(daemon.udp_port, "hello")

    def settled():
        t = daemon.stats()["totals"]
        return t if (t["tcp_connections_active"] == 0 and
                     t["tcp_connections_accepted"] == 1 and
                     t["udp_datagrams_sent"] == 1) else None

    t = wait_until(settled, 10, msg="counters to settle")
    assert t["tcp_bytes_received"] == 5
    assert t["tcp_bytes_sent"] == 5
    assert t["tcp_lines_received"] == 0
    assert t["udp_datagrams_received"] == 1
    assert t["udp_bytes_received"] == 5
    assert t["udp_bytes_sent"] == 5


JAVA_TCP = r"""
import java.io.*;
import java.net.*;

class TCPClient {
    public static void main(String argv[]) throws Exception {
        String sentence;
        String modifiedSentence;
        BufferedReader inFromUser =
            new BufferedReader(new InputStreamReader(System.in));
        Socket clientSocket = new Socket(argv[0], Integer.parseInt(argv[1]));
        clientSocket.setSoTimeout(10000);
        DataOutputStream outToServer =
            new DataOutputStream(clientSocket.getOutputStream());
        BufferedReader inFromServer = new BufferedReader(
            new InputStreamReader(clientSocket.getInputStream()));
        sentence = inFromUser.readLine();
        outToServer.writeBytes(sentence + '\n');
        modifiedSentence = inFromServer.readLine();
        System.out.println("FROM SERVER: " + modifiedSentence);
        clientSocket.close();
    }
}
"""

JAVA_UDP = r"""
import java.io.*;
import java.net.*;

class UDPClient {
    public static void main(String args[]) throws Exception {
        BufferedReader inFromUser =
            new BufferedReader(new InputStreamReader(System.in));
        DatagramSocket clientSocket = new DatagramSocket();
        clientSocket.setSoTimeout(10000);
        InetAddress IPAddress = InetAddress.getByName(args[0]);
        byte[] sendData = new byte[1024];
        byte[] receiveData = new byte[1024];
        String sentence = inFromUser.readLine();
        sendData = sentence.getBytes();
        DatagramPacket sendPacket = new DatagramPacket(sendData,
            sendData.length, IPAddress, Integer.parseInt(args[1]));
        clientSocket.send(sendPacket);
        DatagramPacket receivePacket =
            new DatagramPacket(receiveData, receiveData.length);
        clientSocket.receive(receivePacket);
        String modifiedSentence = new String(receivePacket.getData());
        System.out.println("FROM SERVER:" + modifiedSentence);
        clientSocket.close();
    }
}
"""


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory):
    javac = need_tool("javac", "default-jdk-headless")
    need_tool("java", "default-jdk-headless")
    d = tmp_path_factory.mktemp("java")
    (d / "TCPClient.java").write_text(JAVA_TCP)
    (d / "UDPClient.java").write_text(JAVA_UDP)
    r = subprocess.run([javac, "-d", str(d), str(d / "TCPClient.java"),
                        str(d / "UDPClient.java")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return d


def run_java(classes, cls, port, stdin):
    r = subprocess.run(["java", "-Xshare:auto", "-cp", str(classes), cls,
                        "127.0.0.1", str(port)],
                       input=stdin.encode(), capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return r.stdout.decode("utf-8", "replace")


def test_java_tcp_client(daemon, java_classes):
    out = run_java(java_classes, "TCPClient", daemon.tcp_port,
                   "hello from java\n")
    assert out == "FROM SERVER: HELLO FROM JAVA\n"


def test_java_udp_client(daemon, java_classes):
    out = run_java(java_classes, "UDPClient", daemon.udp_port,
                   "hello from java udp\n")
    # The book's client prints the whole 1024-byte receive buffer, so the
    # reply is followed by NULs up to 1024 bytes.
    assert out.endswith("\n")
    line = out[:-1]
    assert line.rstrip("\0") == "FROM SERVER:HELLO FROM JAVA UDP"
    assert len(line) == len("FROM SERVER:") + 1024
