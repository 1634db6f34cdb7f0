def teardown():
    return []
